//! Bakes libtorch's library folder into the fuzz targets as an rpath (torch-sys says where
//! it is), so they run with no LD_LIBRARY_PATH, as the root package's build.rs does.
fn main() {
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
}
