//! Bakes libtorch's library folder into every binary, test and example of this package
//! (as an rpath), so they run with no LD_LIBRARY_PATH. torch-sys tells us where it is.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // The trybuild UI test builds cases in its own target folder, without this rpath.
        println!("cargo:rustc-env=TCH_PATCH_LIBTORCH_LIB={lib}");
    }
}
