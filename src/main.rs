fn main() -> std::process::ExitCode {
    infergraph::cli::main()
}
