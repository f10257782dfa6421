//! Records the commit the binary is built from, and whether the sources it is built from had
//! changes then, so a report names the code that ran rather than whatever the checkout holds
//! when it runs (a long soak outlives many commits).
use std::path::Path;
use std::process::Command;

/// What the binaries a run starts are built from, relative to this crate: the workspace's
/// crates (sources, migrations, protos, build scripts, manifests) and the lock file. The same
/// paths decide "dirty" and when this script runs again.
const SOURCES: [&str; 6] = [
    "../loadgen",
    "../common",
    "../twopc",
    "../saga",
    "../Cargo.toml",
    "../Cargo.lock",
];

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("--no-optional-locks")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_default();
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    status.extend(SOURCES);
    let dirty = git(&status).is_some_and(|changes| !changes.is_empty());
    println!("cargo:rustc-env=TXLAB_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=TXLAB_BUILD_DIRTY={dirty}");
    // Again on a new commit (HEAD, its ref loose or packed, the index) and on any change to
    // the sources. A watched path that does not exist would make cargo run this every time.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let mut watched = vec![format!("{git_dir}/HEAD"), format!("{git_dir}/index")];
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(format!("{git_dir}/{head_ref}"));
        }
        watched.push(format!("{git_dir}/packed-refs"));
        for path in watched.iter().filter(|p| Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    for sources in SOURCES {
        println!("cargo:rerun-if-changed={sources}");
    }
}
