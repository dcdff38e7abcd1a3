fn main() -> std::process::ExitCode {
    gridwatch::cmds::main()
}
