//! Records the commit the binary is built from, and whether the work tree had changes then, so
//! a report names the code that ran rather than whatever the checkout holds when it runs (a
//! long soak outlives many commits).
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|changes| !changes.is_empty());
    println!("cargo:rustc-env=TXLAB_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=TXLAB_BUILD_DIRTY={dirty}");
    // Run again on a new commit (HEAD's ref, the index) and on any change to the sources of
    // the binaries a run starts, which is what makes a tree dirty.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/index");
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={git_dir}/{head_ref}");
        }
    }
    for sources in [
        "src",
        "../common/src",
        "../twopc/src",
        "../saga/src",
        "../Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={sources}");
    }
}
