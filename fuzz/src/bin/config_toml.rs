//! AFL++ entry of the `config_toml` target (see docs/fuzzing.md).

fn main() {
    afl::fuzz!(|data: &[u8]| kpi_engine_fuzz::config_toml(data));
}
