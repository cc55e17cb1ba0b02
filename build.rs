//! Link-time set-up so the binary finds libtorch without LD_LIBRARY_PATH and sees CUDA.
use std::path::PathBuf;

fn main() {
    println!(
        "cargo:rustc-env=SUPERNET_SOURCE_REVISION={}",
        source_revision()
    );
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    // torch-sys (links = "tch") hands its direct dependents the libtorch lib dir.
    let Ok(lib_dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!(
            "cargo:warning=DEP_TCH_LIBTORCH_LIB not set: no rpath to libtorch; run scripts/setup"
        );
        println!("cargo:rustc-env=SUPERNET_LIBTORCH_VERSION=unknown");
        return;
    };
    let lib_dir = PathBuf::from(lib_dir);
    let lib_dir = lib_dir.canonicalize().unwrap_or(lib_dir);
    println!(
        "cargo:rustc-env=SUPERNET_LIBTORCH_VERSION={}",
        wheel_version(&lib_dir).unwrap_or_else(|| "unknown".into())
    );
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    compile_c10d_shim(&lib_dir);
    compile_backend_shim(&lib_dir);
    // Without --no-as-needed the linker drops libtorch_cuda.so (nothing references its symbols
    // directly) and CUDA is reported unavailable even on a GPU machine.
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch_cuda");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}

/// `__version__` from the wheel's torch/version.py (lib dir is torch/lib), e.g. "2.11.0+cu130".
fn wheel_version(lib_dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(lib_dir.parent()?.join("version.py")).ok()?;
    let line = text.lines().find(|l| l.starts_with("__version__"))?;
    Some(line.split(['\'', '"']).nth(1)?.to_string())
}

/// The commit being built (`-dirty` with uncommitted changes to tracked files), or
/// "unknown" outside a git checkout. Exported models record it.
fn source_revision() -> String {
    for path in [".git/HEAD", ".git/index", ".git/refs/heads"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(rev) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{rev}-dirty"),
            _ => rev,
        },
        None => "unknown".into(),
    }
}

/// The C ABI over c10d's TCPStore and ProcessGroupGloo (src/distrib/c10d.cpp). The gloo
/// headers it parses come from Debian's libgloo-dev (scripts/setup installs it).
fn compile_c10d_shim(lib_dir: &std::path::Path) {
    if !std::path::Path::new("/usr/include/gloo/context.h").exists() {
        panic!("gloo headers not found (/usr/include/gloo): install Debian's libgloo-dev (scripts/setup)");
    }
    compile_shim(
        lib_dir,
        "src/distrib/c10d.cpp",
        "supernet_c10d",
        "-Wno-unused-parameter",
    );
}

/// src/backend/shim.cpp: the libtorch settings tch does not expose (autocast per device and
/// dtype, cuDNN switches, the device allocator's statistics).
fn compile_backend_shim(lib_dir: &std::path::Path) {
    compile_shim(
        lib_dir,
        "src/backend/shim.cpp",
        "supernet_backend",
        "-DGLOG_USE_GLOG_EXPORT",
    );
}

/// One C++ shim compiled against the wheel's libtorch headers (lib dir is torch/lib, headers
/// torch/include) as torch-sys compiles its own wrapper (C++17, the C++11 ABI), linked to
/// libtorch_cpu and c10.
fn compile_shim(lib_dir: &std::path::Path, src: &str, name: &str, flag: &str) {
    println!("cargo:rerun-if-changed={src}");
    let include = lib_dir
        .parent()
        .expect("libtorch lib dir has a parent")
        .join("include");
    cc::Build::new()
        .cpp(true)
        .file(src)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag(flag)
        .warnings(false)
        .compile(name);
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
