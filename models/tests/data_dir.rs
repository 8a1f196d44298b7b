//! Where the data comes from: `--data-dir`, else `$MNIST_DIR`, else `./data/mnist`. (Its own
//! binary: it sets a process-wide environment variable.)

use mnist_loader::resolve_data_dir;
use std::path::Path;

#[test]
fn resolve_data_dir_prefers_flag_then_env_then_default() {
    let flag = Path::new("/from/flag");
    std::env::set_var("MNIST_DIR", "/from/env");
    assert_eq!(resolve_data_dir(Some(flag)), flag);
    assert_eq!(resolve_data_dir(None), Path::new("/from/env"));
    std::env::remove_var("MNIST_DIR");
    assert_eq!(resolve_data_dir(None), Path::new("data/mnist"));
}
