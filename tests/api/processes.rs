//! Real processes for the failure tests: `neurocds serve` and `neurocds worker` with a config of
//! the test's choosing, haproxy in front of replicas, and a PostgreSQL cluster of a test's own
//! (so that it can be stopped without stopping everyone else's). Each is killed when dropped.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::helpers::free_port;

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Process {
    pub child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, and wait for it to be gone.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill the process");
        self.child.wait().expect("reap the process");
    }
}

/// Starts `neurocds SUBCOMMAND` with `config` layered over `config/default.toml` (no
/// `DATABASE_URL` from the environment), and waits until `ready` answers 2xx.
pub async fn neurocds(subcommand: &str, config: &Value, ready: &str) -> Process {
    let file = std::env::temp_dir().join(format!("neurocds-{subcommand}-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&file, toml::to_string(config).expect("a TOML-able config")).unwrap();
    let log = file.with_extension("log");
    let child = Command::new(env!("CARGO_BIN_EXE_neurocds"))
        .arg(subcommand)
        .env("NEUROCDS_CONFIG", &file)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start neurocds");
    let process = Process { child, log };
    wait_ready(ready, &process.log).await;
    process
}

pub async fn wait_ready(url: &str, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(Instant::now() < deadline, "{url} did not become ready; see {}", log.display());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// haproxy on `port`, round-robin over `backends` (ports), health-checked on `/readyz` every
/// 300 ms; a connection that fails is retried on another backend (safe: nothing was sent).
pub async fn haproxy(port: u16, backends: &[u16]) -> Process {
    let servers: String = backends.iter().enumerate().map(|(i, p)| format!("  server s{i} 127.0.0.1:{p} check inter 300ms fall 1 rise 2\n")).collect();
    let config = format!(
        "global\n  maxconn 512\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  \
         retries 3\n  option redispatch\n  retry-on conn-failure\nfrontend hooks\n  bind 127.0.0.1:{port}\n  default_backend neurocds\n\
         backend neurocds\n  balance roundrobin\n  option httpchk GET /readyz\n{servers}"
    );
    let file = std::env::temp_dir().join(format!("neurocds-haproxy-{}.cfg", uuid::Uuid::new_v4()));
    std::fs::write(&file, config).unwrap();
    let log = file.with_extension("log");
    // Debian puts it in /usr/sbin, which a non-root PATH may lack.
    let bin = if std::path::Path::new("/usr/sbin/haproxy").exists() { "/usr/sbin/haproxy" } else { "haproxy" };
    let child = Command::new(bin)
        .args(["-db", "-f"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("haproxy (scripts/bootstrap.sh installs it)");
    let process = Process { child, log };
    wait_ready(&format!("http://127.0.0.1:{port}/readyz"), &process.log).await;
    process
}

/// A PostgreSQL cluster of the test's own, on a free port, that the test may stop and start.
pub struct Postgres {
    data: PathBuf,
    pub port: u16,
}

fn pg_bin(tool: &str) -> PathBuf {
    let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL is installed").flatten().map(|e| e.path().join("bin")).collect();
    bins.sort();
    bins.pop().expect("a PostgreSQL version").join(tool)
}

/// As root the cluster runs as `postgres` (which refuses to run as root).
fn as_pg(tool: &str) -> Command {
    let root = std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0"));
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(pg_bin(tool));
        c
    } else {
        Command::new(pg_bin(tool))
    }
}

impl Postgres {
    pub fn start() -> Postgres {
        let data = PathBuf::from("/var/tmp").join(format!("neurocds-test-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data).unwrap();
        let _ = Command::new("chown").args(["-R", "postgres"]).arg(&data).status();
        let _ = Command::new("chmod").arg("700").arg(&data).status();
        let ok = as_pg("initdb").arg("-D").arg(&data).args(["-U", "neurocds", "--auth=trust", "-E", "UTF8"]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        assert!(ok.success(), "initdb");
        let pg = Postgres { data, port: free_port() };
        pg.up();
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://neurocds@127.0.0.1:{}/postgres", self.port)
    }

    pub fn up(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.data.display());
        let ok = as_pg("pg_ctl").arg("-D").arg(&self.data).arg("-l").arg(self.data.join("server.log")).args(["-w", "-t", "30", "-o", &options, "start"]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        assert!(ok.success(), "pg_ctl start");
    }

    /// A fast shutdown: sessions are cut, committed work stays.
    pub fn down(&self) {
        let ok = as_pg("pg_ctl").arg("-D").arg(&self.data).args(["-m", "fast", "-w", "stop"]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
        assert!(ok.success(), "pg_ctl stop");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_pg("pg_ctl").arg("-D").arg(&self.data).args(["-m", "immediate", "stop"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
