fn main() -> std::process::ExitCode {
    gridwatch::cli::main()
}
