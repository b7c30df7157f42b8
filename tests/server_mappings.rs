//! Mappings through the server (SPEC 15): `POST /api/records/{entity}?mapping=NAME` with a
//! Salesforce export as the body, a mapping file added while the server runs (hot reload), and a
//! JSON body with a UTF-8 BOM accepted like a CSV one.

use crate::util::server as server_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use server_common::{Options, Server, root};

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel),
    )
    .unwrap()
}

#[test]
fn a_mapped_body_is_imported_and_a_new_mapping_is_hot_reloaded() {
    let dir = root();
    std::fs::write(dir.path().join("teams.csv"), fixture("teams.csv")).unwrap();
    std::fs::write(dir.path().join("User.csv"), fixture("salesforce/User.csv")).unwrap();
    for args in [
        vec!["import", "teams", "teams.csv"],
        vec![
            "import",
            "owners",
            "User.csv",
            "--mapping",
            "salesforce_user",
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kpi"))
            .arg("--root")
            .arg(dir.path())
            .args(&args)
            .current_dir(dir.path())
            .env_remove("KPI_DB")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let s = Server::start_in(dir, Options::default());
    let body = fixture("salesforce/Opportunities.csv");
    let r = s.request(
        "POST",
        "/api/records/deals?mapping=salesforce_opportunity",
        Some(server_common::ADMIN),
        &[],
        Some(&body),
    );
    r.expect(200);
    assert_eq!(r.json["written"], 4, "{}", r.text);
    assert_eq!(s.value("revenue", "shanghai", "2026-Q1"), json!(125000.0));

    // A mapping added while serving is used without a restart.
    let v = s.health()["config_version"].as_u64().unwrap();
    std::fs::write(
        s.path("kpis/mappings/crm_teams.toml"),
        "[mapping]\nentity = \"teams\"\ndelimiter = \";\"\n[mapping.fields]\nid = \"Code\"\nname = \"Label\"\nparent = \"Parent\"\n",
    )
    .unwrap();
    s.wait_for("the new mapping is loaded", Duration::from_secs(10), || {
        s.health()["config_version"].as_u64() > Some(v)
    });
    let r = s.request(
        "POST",
        "/api/records/teams?mapping=crm_teams",
        Some(server_common::ADMIN),
        &[],
        Some("Code;Label;Parent\nsuzhou;苏州;east\n".as_bytes()),
    );
    r.expect(200);
    assert_eq!(r.json["written"], 1, "{}", r.text);
    // An unknown mapping is a 422 naming the ones there are.
    let r = s.request(
        "POST",
        "/api/records/teams?mapping=crm_team",
        Some(server_common::ADMIN),
        &[],
        Some(b"x\n"),
    );
    r.expect(422);
    assert!(r.text.contains("did you mean 'crm_teams'"), "{}", r.text);
}

#[test]
fn a_json_body_with_a_bom_is_accepted() {
    let s = Server::start();
    let body = "\u{feff}[{\"id\": \"north\", \"name\": \"North\"}]";
    let r = s.request(
        "POST",
        "/api/records/teams",
        Some(server_common::ADMIN),
        &[],
        Some(body.as_bytes()),
    );
    r.expect(200);
    assert_eq!(r.json["written"], 1, "{}", r.text);
    let ndjson = "\u{feff}{\"id\": \"south\", \"name\": \"South\"}\n";
    let r = s.request(
        "POST",
        "/api/records/teams",
        Some(server_common::ADMIN),
        &[],
        Some(ndjson.as_bytes()),
    );
    r.expect(200);
    let _: Value = r.json.clone();
}
