fn main() {
    std::process::exit(hwrun::cli::main());
}
