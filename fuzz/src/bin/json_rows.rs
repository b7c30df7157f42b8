//! AFL++ entry of the `json_rows` target (see docs/fuzzing.md).

fn main() {
    afl::fuzz!(|data: &[u8]| kpi_engine_fuzz::json_rows(data));
}
