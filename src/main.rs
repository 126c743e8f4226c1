fn main() -> std::process::ExitCode {
    infergraph::memory::for_loading();
    infergraph::cli::main()
}
