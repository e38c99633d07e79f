#![forbid(unsafe_code)]

/// mimalloc instead of the C library's allocator. A request allocates and frees many small
/// buffers across threads (Tokio workers, SQLite connection threads); under glibc's malloc that
/// took about a third of the workers' time in the vault benchmark's reads (arena locks,
/// `malloc_consolidate`), and more for audited calls, which allocate their event too. With
/// mimalloc, reads at 32 and 128 callers ran 44-67% faster audited and 24-43% faster unaudited
/// (2026-12-05, see docs/ARCHITECTURE.md). Secrets do not depend on it: they zeroize themselves before freeing.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    phivault::cli::main()
}
