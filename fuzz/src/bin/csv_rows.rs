//! AFL++ entry of the `csv_rows` target (see docs/fuzzing.md).

fn main() {
    afl::fuzz!(|data: &[u8]| kpi_engine_fuzz::csv_rows(data));
}
