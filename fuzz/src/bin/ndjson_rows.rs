//! AFL++ entry of the `ndjson_rows` target (see docs/fuzzing.md).

fn main() {
    afl::fuzz!(|data: &[u8]| kpi_engine_fuzz::ndjson_rows(data));
}
