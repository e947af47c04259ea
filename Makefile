# kiln: the two commands a newcomer runs on a fresh Debian machine:
#   make image   installs what it needs, builds the default demo NUC image (out/nuc.img)
#   make test    installs the validators, runs every test and the lints
# Further targets: make bench (benchmarks, side by side with the standard tools), make lint,
#   make fuzz (every parser of untrusted bytes, FUZZ_SECONDS each; fuzz/README.md).

SHELL := /bin/bash
CARGO ?= cargo
OUT ?= out
BOARD ?= nuc
RECIPE ?= bob-onprem
export SOURCE_DATE_EPOCH ?= 1700000000

# Debian packages: what the demo inputs need, and the validators the tests run.
IMAGE_PKGS := ca-certificates curl gcc libc6-dev make pkg-config busybox-static dpkg-dev debian-archive-keyring gzip xz-utils zstd
TEST_PKGS := $(IMAGE_PKGS) dosfstools mtools fdisk gdisk util-linux e2fsprogs bmap-tools attr time \
	umoci skopeo docker.io containerd mmdebstrap qemu-utils python3 python3-venv zip groff-base man-db libxml2-utils minisign openssl
BENCH_PKGS := $(TEST_PKGS) genimage hyperfine openssl strace

.PHONY: sbom-validators ovf-validators all image test bench boot boot-smoke boot-smoke-amd64 boot-vm lint fuzz fuzz-million fuzz-smoke deps-image deps-test deps-bench deps-boot demo-inputs build build-release clean

all: build

# Installs what is missing (root on a fresh Debian machine; apt-get update first).
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

deps-image:
	$(call apt_install,$(IMAGE_PKGS))
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust (rustup) first"; exit 1; }

deps-test:
	$(call apt_install,$(TEST_PKGS))

deps-bench:
	$(call apt_install,$(BENCH_PKGS))

# The SBOM validators (issue 18, tests/e2e/sbom.rs): PyPI spdx-tools
# (pyspdxtools) and cyclonedx-python-lib's JSON schema validator, pinned,
# in a venv under target/.
SBOM_VENV := target/sbom-venv
SBOM_PY_PKGS := spdx-tools==0.8.5 cyclonedx-python-lib[json-validation]==11.12.0
sbom-validators: deps-test
	@[ -f $(SBOM_VENV)/.installed ] && [ "$$(cat $(SBOM_VENV)/.installed)" = "$(SBOM_PY_PKGS)" ] || { \
	  python3 -m venv $(SBOM_VENV) && $(SBOM_VENV)/bin/pip install -q $(SBOM_PY_PKGS) && \
	  echo "$(SBOM_PY_PKGS)" > $(SBOM_VENV)/.installed; }

# The OVF validator (issue 19, tests/e2e/vm_import.rs): PyPI cot (the
# Common OVF Tool), pinned, in a venv under target/; it measures the VMDK
# with qemu-img (qemu-utils, in deps-test).
OVF_VENV := target/ovf-venv
OVF_PY_PKGS := cot==2.2.1
ovf-validators: deps-test
	@[ -f $(OVF_VENV)/.installed ] && [ "$$(cat $(OVF_VENV)/.installed)" = "$(OVF_PY_PKGS)" ] || { \
	  python3 -m venv $(OVF_VENV) && $(OVF_VENV)/bin/pip install -q $(OVF_PY_PKGS) && \
	  echo "$(OVF_PY_PKGS)" > $(OVF_VENV)/.installed; }

# QEMU and firmware for the boot proof. The machines ship qemu-utils from
# bookworm-backports: qemu-system-* must come from the same suite or apt
# removes qemu-utils (demo/os/README.md).
# qemu-user-static: the armhf demo OS build runs armhf binaries (binfmt_misc).
BOOT_PKGS := qemu-system-x86 qemu-system-arm qemu-user-static ovmf grub-pc-bin grub-efi-amd64-bin grub-common
deps-boot: deps-test
	@if ! ( for p in $(BOOT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || exit 1; done ); then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' | $$SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null; \
	  fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports $(BOOT_PKGS); \
	fi
	$(call apt_install,jq)

# The boot proof (issue 5): builds the Debian demo appliance OS for amd64
# and armhf (mmdebstrap, cached), the nuc, nuc-gpt and fin-cm3 images,
# boots them in QEMU without network (SeaBIOS, OVMF, arm -M virt; nuc also
# as qcow2, monolithicSparse VMDK and the VMDK of its OVA, nuc-gpt as VHDX)
# and runs the negative checks. See demo/os/README.md for times.
boot: deps-boot demo-inputs build
	bash tests/boot/boot-all.sh target/debug/kiln

# A faster subset: nuc qcow2 under OVMF, fin-cm3 under arm -M virt, the
# swap-off negative check.
boot-smoke: deps-boot demo-inputs build
	SMOKE=1 bash tests/boot/boot-all.sh target/debug/kiln

# The part of the boot proof `make test` runs: no armhf OS build (15-22
# min under qemu-user), about 10 min cold on this machine's class.
boot-smoke-amd64: deps-boot demo-inputs build
	SMOKE=amd64 bash tests/boot/boot-all.sh target/debug/kiln

# The VM-import boots (issue 19): nuc-gpt VHDX under OVMF, nuc
# monolithicSparse VMDK and the VMDK of its OVA under SeaBIOS.
boot-vm: deps-boot demo-inputs build
	SMOKE=vm bash tests/boot/boot-all.sh target/debug/kiln

demo-inputs: deps-image
	bash demo/make-inputs.sh

build:
	$(CARGO) build -p kiln

build-release:
	$(CARGO) build --release -p kiln

# A bootable NUC image (BIOS and UEFI): the Debian demo appliance OS
# (demo/os, mmdebstrap, 5-8 min on the first run, cached) with the demo app,
# recipe demo/os/bob-boot.toml. Writes out/nuc.img, nuc.img.bmap,
# nuc.manifest.json and SHA256SUMS; flash or import it as README.md says.
# Also the shell completions (kiln.bash, _kiln, kiln.fish) and the man page
# (kiln.1), generated from the CLI's own definitions.
IMAGE_OS_PKGS := mmdebstrap grub-common grub-pc-bin grub-efi-amd64-bin umoci
image: deps-image build-release
	$(call apt_install,$(IMAGE_OS_PKGS))
	bash demo/os/make-os.sh amd64
	env -u OUT bash demo/app/make-demo-app.sh
	mkdir -p $(OUT)
	target/release/kiln build --board nuc --recipe demo/os/bob-boot.toml -o $(OUT)/nuc.img
	target/release/kiln inspect $(OUT)/nuc.img
	target/release/kiln completions bash > $(OUT)/kiln.bash
	target/release/kiln completions zsh > $(OUT)/_kiln
	target/release/kiln completions fish > $(OUT)/kiln.fish
	target/release/kiln man > $(OUT)/kiln.1

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

test: deps-test sbom-validators ovf-validators demo-inputs build
	$(CARGO) test --workspace --no-fail-fast
	$(MAKE) fuzz-smoke
	# A real Debian root filesystem through the ext4 writer (mmdebstrap
	# builds the tar on the first run, ~6 min; cached in .cache/ext4).
	$(CARGO) test -p kiln-ext4 --test debian -- --ignored
	# Boot proof, amd64 part (the nuc qcow2 output under OVMF and an image
	# preloaded with --base under SeaBIOS); `make boot` runs all of it.
	$(MAKE) boot-smoke-amd64
	$(MAKE) lint

# Fuzzing (issue 16): the in-tree mutation fuzzer (fuzz/, stable
# toolchain) runs every target for FUZZ_SECONDS over its seed corpus
# (fuzz/corpus, made by fuzz/make-corpus.sh) plus seeded mutations, one
# process per target, and prints executions, crashes, hangs and peak
# memory per target. Crashes and hangs are saved to fuzz/artifacts/ and
# fail the run.
FUZZ_SECONDS ?= 60
fuzz:
	$(CARGO) build -p kiln-fuzz
	target/debug/kiln-fuzz all --seconds $(FUZZ_SECONDS)

# Every target to 10^6 executions (the issue's bar), optimised build;
# hours on a 2-core machine for the image readers. Prints the table.
fuzz-million:
	$(CARGO) build --release -p kiln-fuzz
	target/release/kiln-fuzz all --execs 1000000 --seconds 36000

# The smoke `make test` runs: ~3 s per target (the corpus, then
# mutations), about a minute in all.
fuzz-smoke:
	$(CARGO) build -p kiln-fuzz
	target/debug/kiln-fuzz all --seconds 3

bench: deps-bench demo-inputs build-release
	@for b in bench/*.sh; do echo "== $$b"; bash "$$b" || exit 1; done

clean:
	rm -rf $(OUT) target
