//! AFL++ entry of the `mapping_file` target (see docs/fuzzing.md).

fn main() {
    afl::fuzz!(|data: &[u8]| kpi_engine_fuzz::mapping_file(data));
}
