//! `kiln drives` on this machine: the disk holding `/` is listed as
//! excluded, a loop device the test attaches appears with its size and
//! backing file, `--for IMAGE` excludes it when it is smaller than the
//! image, and `--json` parses. Needs root for losetup (listing does not).

use kiln_e2e::*;
use serde_json::Value;
use std::fs::File;

const MIB: u64 = 1 << 20;

fn drives(args: &[&str]) -> Vec<Value> {
    let out = ok(kiln().arg("drives").arg("--json").args(args));
    let v: Value = serde_json::from_str(&out).expect("kiln drives --json parses");
    v.as_array().expect("an array").clone()
}

#[test]
fn lists_the_system_disk_as_excluded_and_a_loop_device_with_its_size() {
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    let backing = d.path().join("stick");
    File::create(&backing).unwrap().set_len(64 * MIB).unwrap();
    let lo = Loop::disk(&backing, 512);

    let list = drives(&[]);
    let root: Vec<_> = list
        .iter()
        .filter(|x| x["mounted_at"].as_array().unwrap().iter().any(|m| m == "/"))
        .collect();
    assert_eq!(root.len(), 1, "one disk holds /: {list:#?}");
    assert_eq!(root[0]["excluded"]["reason"], "holds-root", "{root:#?}");

    let find = |list: &[Value]| -> Value {
        list.iter()
            .find(|x| x["path"] == lo.0.as_str())
            .unwrap_or_else(|| panic!("{} not listed: {list:#?}", lo.0))
            .clone()
    };
    let mine = find(&list);
    assert_eq!(mine["size_bytes"], 64 * MIB);
    assert_eq!(mine["transport"], "loop");
    assert_eq!(
        mine["backing_file"].as_str().unwrap(),
        backing.canonicalize().unwrap().to_str().unwrap()
    );
    assert!(mine["excluded"].is_null(), "{mine:#}");
    // Eligible drives come before excluded ones.
    let first_excluded = list.iter().position(|x| !x["excluded"].is_null());
    let last_eligible = list.iter().rposition(|x| x["excluded"].is_null());
    assert!(last_eligible < first_excluded, "{list:#?}");

    // An image larger than the loop device excludes it; a smaller one not.
    let big = d.path().join("big.img");
    File::create(&big).unwrap().set_len(100 * MIB).unwrap();
    let mine = find(&drives(&["--for", big.to_str().unwrap()]));
    assert_eq!(mine["excluded"]["reason"], "too-small", "{mine:#}");
    let small = d.path().join("small.img");
    File::create(&small).unwrap().set_len(10 * MIB).unwrap();
    assert!(find(&drives(&["--for", small.to_str().unwrap()]))["excluded"].is_null());

    // The text form: one line per drive with its path, transport, size.
    let text = ok(kiln().arg("drives"));
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{} ", lo.0)))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("loop") && line.contains("64.0 MiB"), "{line}");
    assert!(
        text.contains("[excluded: holds the root filesystem"),
        "{text}"
    );

    // A missing image is one line naming it, exit 2.
    let out = run(kiln()
        .args(["drives", "--for"])
        .arg(d.path().join("nope.img")));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope.img") && err.trim().lines().count() == 1,
        "{err}"
    );
}
