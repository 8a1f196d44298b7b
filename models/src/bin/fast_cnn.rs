//! Trains `fast_cnn` (two conv + batch-norm stages, two linear layers) on MNIST with the fast
//! recipe: `cargo run --release -p models --bin fast_cnn -- --help`.

fn main() -> std::process::ExitCode {
    models::cli::main(models::Network::FastCnn)
}
