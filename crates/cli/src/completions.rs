//! `kiln completions bash|zsh|fish` and `kiln man`: shell completion
//! scripts (clap_complete) and a roff man page (clap_mangen), generated
//! from the same clap definitions that parse the command line, so they
//! can never disagree with it. Both print to stdout.

use anyhow::Result;
use clap::CommandFactory;
use std::io::Write;

/// Arguments of `kiln completions`.
#[derive(clap::Args)]
pub struct Args {
    /// The shell: bash, zsh or fish.
    shell: Shell,
}

/// The shells completions are made for.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Runs `kiln completions`.
pub fn run(a: Args) -> Result<()> {
    let mut cmd = crate::Cli::command();
    let mut out = Vec::new();
    let shell = match a.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "kiln", &mut out);
    std::io::stdout().lock().write_all(&out)?;
    Ok(())
}

/// Runs `kiln man`: the man page of `kiln` with a section per
/// subcommand.
pub fn man() -> Result<()> {
    let cmd = crate::Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("kiln-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .bin_name(name.replace('-', " "));
        // One page: a section per subcommand, its own sections as
        // subsections of it.
        let mut page = format!(".SH \"{}\"\n", name.replace('-', " ").to_uppercase()).into_bytes();
        let man = clap_mangen::Man::new(sub);
        man.render_description_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        man.render_options_section(&mut page)?;
        out.extend_from_slice(&demote(&page));
    }
    std::io::stdout().lock().write_all(&out)?;
    Ok(())
}

/// A subcommand's `.SH` headings (after the first, naming it) as `.SS`.
fn demote(page: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(page);
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if let (true, Some(h)) = (i > 0, line.strip_prefix(".SH ")) {
            out.push_str(".SS ");
            out.push_str(h);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.into_bytes()
}
