//! The deployment a platform team runs (deploy/): checked offline, with no cluster and no
//! container runtime — the Kubernetes schemas, hadolint, the platform rules, and the site
//! configuration the manifests carry, loaded as the service's own settings.

use std::{path::Path, process::Command};

use figment::{
    Figment,
    providers::{Format, Toml},
};
use neurocds::config::Settings;

use crate::helpers::python;

fn check(deploy: &Path) -> (bool, String) {
    let out = Command::new(python().join("deploy-venv/bin/python"))
        .arg("scripts/check_deploy.py")
        .arg(deploy)
        .output()
        .expect("the deploy venv (scripts/bootstrap.sh installs it)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_manifests_validate_against_kubernetes_and_keep_the_platform_rules() {
    let (ok, report) = check(Path::new("deploy"));
    assert!(ok, "{report}");
    assert!(report.contains("9 manifests"), "{report}");
}

/// The checks can fail: a container allowed to write its root filesystem, and a PACS network
/// the service may reach that the NetworkPolicy forgot, are both named.
#[test]
fn a_writable_root_filesystem_and_a_network_the_policy_forgot_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    };
    copy(Path::new("deploy/kubernetes"), &dir.path().join("kubernetes"));
    copy(Path::new("deploy/container"), &dir.path().join("container"));
    let edit = |file: &str, from: &str, to: &str| {
        let path = dir.path().join("kubernetes").join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    edit("serve.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false");
    edit("networkpolicy.yaml", "cidr: 10.30.0.0/24", "cidr: 10.31.0.0/24");
    let (ok, report) = check(dir.path());
    assert!(!ok, "{report}");
    assert!(report.contains("Deployment/neurocds-serve/serve: readOnlyRootFilesystem"), "{report}");
    assert!(report.contains("10.30.0.0/24 is allowed by the service but not reachable"), "{report}");
}

/// The site configuration in the manifests is one the service starts with (its settings refuse
/// unknown keys and check values), layered over config/default.toml as in the container.
#[test]
fn the_site_configuration_the_manifests_carry_is_valid_for_the_service() {
    let out = Command::new(python().join("deploy-venv/bin/python")).args(["scripts/check_deploy.py", "deploy", "--site-toml"]).output().unwrap();
    assert!(out.status.success());
    let site = String::from_utf8(out.stdout).unwrap();
    let figment = Figment::new()
        .merge(Toml::file_exact("config/default.toml"))
        .merge(Toml::string(&site))
        .merge(("database.url", "postgres://neurocds_app@db.example/neurocds"));
    let settings = Settings::from_figment(figment).unwrap_or_else(|e| panic!("deploy/kubernetes/secrets.example.yaml site.toml: {e}"));
    assert!(settings.trust.shared_replay_check);
    assert_eq!(settings.server.listen.to_string(), "0.0.0.0:8080");
}
