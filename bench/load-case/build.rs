//! Bakes libtorch's library folder into the binary as an rpath (see the root crate's
//! build.rs), so `bench/load_memory.py` and its test run it with no LD_LIBRARY_PATH.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
