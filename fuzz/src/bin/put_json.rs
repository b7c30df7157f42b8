//! AFL++ entry of the `put_json` target (see docs/fuzzing.md).

fn main() {
    afl::fuzz!(|data: &[u8]| kpi_engine_fuzz::put_json(data));
}
