// The entry points SwiftPM links the fuzz executables with.
//
// For a Swift executable target (tools version 5.5 and later) SwiftPM renames the entry point to
// `<Module>_main` and links with `--defsym main=<Module>_main` (so tests can link executables).
// A libFuzzer target has no Swift entry point (`-parse-as-library`; libFuzzer owns `main`), so
// that link fails with "undefined symbol 'FuzzText_main'" (swiftlang/swift-package-manager#8731).
// These definitions supply the renamed symbols and start libFuzzer's driver exactly as its own
// `main` does: FuzzerDriver(&argc, &argv, LLVMFuzzerTestOneInput).
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ENTRY(name) \
    int name(int argc, char **argv); \
    int name(int argc, char **argv) { return LLVMFuzzerRunDriver(&argc, &argv, LLVMFuzzerTestOneInput); }

FUZZ_ENTRY(FuzzText_main)
FUZZ_ENTRY(FuzzModel_main)
FUZZ_ENTRY(FuzzJSON_main)
FUZZ_ENTRY(FuzzCursor_main)
FUZZ_ENTRY(FuzzIdempotency_main)
