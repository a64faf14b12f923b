//! Bakes libtorch's library folder into this package's tests as an rpath (see the root
//! crate's build.rs).
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
