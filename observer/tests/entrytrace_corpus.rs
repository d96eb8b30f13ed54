//! Entry-trace corpus: realistic entrypoints (modelled on the official images' scripts, in
//! `fixtures/entrytrace/`) each in a throw-away root filesystem, traced without running
//! anything.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use zastava_observer::entrytrace::{trace, EntryTrace};

const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";
const MAX_DEPTH: usize = 48;

/// A root filesystem under the temporary directory, removed when dropped.
struct Root(PathBuf);

impl Root {
    fn new(name: &str) -> Root {
        let dir =
            std::env::temp_dir().join(format!("zastava-entrytrace-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Root(dir)
    }

    fn host(&self, path: &str) -> PathBuf {
        self.0.join(path.trim_start_matches('/'))
    }

    fn file(&self, path: &str, content: &[u8], mode: u32) -> &Self {
        let host = self.host(path);
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        fs::write(&host, content).unwrap();
        fs::set_permissions(&host, fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    fn binary(&self, path: &str) -> &Self {
        self.file(path, ELF, 0o755)
    }

    fn fixture(&self, path: &str, name: &str) -> &Self {
        let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/entrytrace")
            .join(name);
        self.file(path, &fs::read(&fixture).unwrap(), 0o755)
    }

    fn link(&self, path: &str, target: &str) -> &Self {
        let host = self.host(path);
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        symlink(target, host).unwrap();
        self
    }

    fn trace(&self, argv: &[&str]) -> EntryTrace {
        self.trace_path(argv, None)
    }

    fn trace_path(&self, argv: &[&str], path: Option<&str>) -> EntryTrace {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        trace(&self.0, &argv, path, MAX_DEPTH)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A merged-/usr Debian base: `/bin -> usr/bin`, `sh -> dash`, bash, env, gosu.
fn debian(name: &str) -> Root {
    let root = Root::new(name);
    root.link("/bin", "usr/bin")
        .link("/sbin", "usr/sbin")
        .binary("/usr/bin/dash")
        .link("/usr/bin/sh", "dash")
        .binary("/usr/bin/bash")
        .binary("/usr/bin/env")
        .binary("/usr/local/bin/gosu");
    root
}

/// Steps as `file:line op target`, for readable exact assertions.
fn steps(t: &EntryTrace) -> Vec<String> {
    t.steps
        .iter()
        .map(|s| format!("{}:{} {} {}", s.file, s.line, s.op, s.target))
        .collect()
}

#[track_caller]
fn check(t: &EntryTrace, expected_steps: &[&str], terminals: &[&str]) {
    assert_eq!(steps(t), expected_steps, "{t:#?}");
    assert_eq!(t.terminals, terminals, "{t:#?}");
}

#[track_caller]
fn clean(t: &EntryTrace) {
    assert!(t.warnings.is_empty() && !t.truncated, "{t:#?}");
}

const PG_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/16/bin";

/// postgres: `#!/usr/bin/env bash`, everything in functions, `_main "$@"` guarded by an
/// undecidable `_is_sourced`, a re-exec through gosu (a cycle), then `exec "$@"`.
#[test]
fn postgres() {
    let root = debian("postgres");
    root.fixture(
        "/usr/local/bin/docker-entrypoint.sh",
        "postgres-docker-entrypoint.sh",
    )
    .binary("/usr/lib/postgresql/16/bin/postgres");
    let ep = "/usr/local/bin/docker-entrypoint.sh";
    let start = [
        "argv:0 exec docker-entrypoint.sh".to_string(),
        format!("argv:0 path-lookup {ep}"),
        format!("{ep}:1 shebang /usr/bin/env"),
        format!("{ep}:1 wrapper bash"),
        format!("{ep}:1 path-lookup /usr/bin/bash"),
        format!("{ep}:1 interpreter {ep}"),
        format!("{ep}:329 branch then"),
    ];
    let gosu = [
        format!("{ep}:286 branch then"),
        format!("{ep}:288 exec gosu"),
        format!("{ep}:288 path-lookup /usr/local/bin/gosu"),
        format!("{ep}:288 wrapper {ep}"),
        format!("{ep}:288 cycle {ep}"),
    ];
    let exec = [
        format!("{ep}:326 exec postgres"),
        format!("{ep}:326 path-lookup /usr/lib/postgresql/16/bin/postgres"),
    ];
    let expected: Vec<String> = start.iter().chain(&gosu).chain(&exec).cloned().collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    let warnings = [
        format!("{ep}:93: `eval` of a string not known before the container runs"),
        format!("{ep}:158: the sourced file `$f` is not known before the container runs"),
    ];

    let t = root.trace_path(&["docker-entrypoint.sh", "postgres"], Some(PG_PATH));
    check(&t, &expected, &["/usr/lib/postgresql/16/bin/postgres"]);
    assert_eq!(t.warnings, warnings);
    assert!(!t.truncated);

    // A flag first: `set -- postgres "$@"`; the re-exec under gosu then has other arguments,
    // so the script is traced once more before the cycle shows.
    let t = root.trace_path(
        &["docker-entrypoint.sh", "-c", "max_connections=200"],
        Some(PG_PATH),
    );
    check(&t, &expected, &["/usr/lib/postgresql/16/bin/postgres"]);
    assert!(!t.truncated);

    // `postgres --version`: `_pg_want_help` says so, no setup, no gosu.
    let t = root.trace_path(
        &["docker-entrypoint.sh", "postgres", "--version"],
        Some(PG_PATH),
    );
    let expected: Vec<String> = start.iter().chain(&exec).cloned().collect();
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    check(&t, &expected, &["/usr/lib/postgresql/16/bin/postgres"]);
    clean(&t);
}

/// redis: `${1#-}`/`${1%.conf}` rewrites with `set --`, `[ ... -a "$(id -u)" = '0' ]`, a
/// re-exec of `"$0"` through gosu.
#[test]
fn redis() {
    let root = debian("redis");
    root.fixture(
        "/usr/local/bin/docker-entrypoint.sh",
        "redis-docker-entrypoint.sh",
    )
    .binary("/usr/local/bin/redis-server");
    let expected = [
        "argv:0 exec docker-entrypoint.sh",
        "argv:0 path-lookup /usr/local/bin/docker-entrypoint.sh",
        "/usr/local/bin/docker-entrypoint.sh:1 shebang /bin/sh",
        "/usr/local/bin/docker-entrypoint.sh:1 symlink /usr/bin/dash",
        "/usr/local/bin/docker-entrypoint.sh:1 interpreter /usr/local/bin/docker-entrypoint.sh",
        "/usr/local/bin/docker-entrypoint.sh:12 branch then",
        "/usr/local/bin/docker-entrypoint.sh:14 exec gosu",
        "/usr/local/bin/docker-entrypoint.sh:14 path-lookup /usr/local/bin/gosu",
        "/usr/local/bin/docker-entrypoint.sh:14 wrapper /usr/local/bin/docker-entrypoint.sh",
        "/usr/local/bin/docker-entrypoint.sh:14 cycle /usr/local/bin/docker-entrypoint.sh",
        "/usr/local/bin/docker-entrypoint.sh:25 exec redis-server",
        "/usr/local/bin/docker-entrypoint.sh:25 path-lookup /usr/local/bin/redis-server",
    ];
    for argv in [
        &["docker-entrypoint.sh", "redis-server"][..],
        &["docker-entrypoint.sh", "--appendonly", "yes"],
        &["docker-entrypoint.sh", "/etc/redis/redis.conf"],
    ] {
        let t = root.trace(argv);
        check(&t, &expected, &["/usr/local/bin/redis-server"]);
        clean(&t);
    }
    // Something else entirely: the `if` is decided (not redis-server), no gosu.
    let t = root.trace(&["docker-entrypoint.sh", "sh"]);
    check(
        &t,
        &[
            "argv:0 exec docker-entrypoint.sh",
            "argv:0 path-lookup /usr/local/bin/docker-entrypoint.sh",
            "/usr/local/bin/docker-entrypoint.sh:1 shebang /bin/sh",
            "/usr/local/bin/docker-entrypoint.sh:1 symlink /usr/bin/dash",
            "/usr/local/bin/docker-entrypoint.sh:1 interpreter /usr/local/bin/docker-entrypoint.sh",
            "/usr/local/bin/docker-entrypoint.sh:25 exec sh",
            "/usr/local/bin/docker-entrypoint.sh:25 path-lookup /usr/bin/sh",
            "/usr/local/bin/docker-entrypoint.sh:25 symlink /usr/bin/dash",
        ],
        &["/usr/bin/dash"],
    );
}

/// nginx: a function, a pipeline into `while read` (not followed: its files are only known
/// at run time), `exec "$@"` with an argument holding a blank.
#[test]
fn nginx() {
    let root = debian("nginx");
    root.fixture("/docker-entrypoint.sh", "nginx-docker-entrypoint.sh")
        .binary("/usr/sbin/nginx");
    let t = root.trace(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]);
    check(
        &t,
        &[
            "argv:0 exec /docker-entrypoint.sh",
            "/docker-entrypoint.sh:1 shebang /bin/sh",
            "/docker-entrypoint.sh:1 symlink /usr/bin/dash",
            "/docker-entrypoint.sh:1 interpreter /docker-entrypoint.sh",
            "/docker-entrypoint.sh:48 exec nginx",
            "/docker-entrypoint.sh:48 path-lookup /usr/sbin/nginx",
        ],
        &["/usr/sbin/nginx"],
    );
    clean(&t);
}

/// node: a leading flag means node (decided from argv); otherwise `command -v` cannot be
/// known, so both `node node server.js` and `node server.js` are candidates.
#[test]
fn node() {
    let root = debian("node");
    root.fixture(
        "/usr/local/bin/docker-entrypoint.sh",
        "node-docker-entrypoint.sh",
    )
    .binary("/usr/local/bin/node");
    let start = [
        "argv:0 exec docker-entrypoint.sh",
        "argv:0 path-lookup /usr/local/bin/docker-entrypoint.sh",
        "/usr/local/bin/docker-entrypoint.sh:1 shebang /bin/sh",
        "/usr/local/bin/docker-entrypoint.sh:1 symlink /usr/bin/dash",
        "/usr/local/bin/docker-entrypoint.sh:1 interpreter /usr/local/bin/docker-entrypoint.sh",
        "/usr/local/bin/docker-entrypoint.sh:12 exec node",
        "/usr/local/bin/docker-entrypoint.sh:12 path-lookup /usr/local/bin/node",
    ];
    let t = root.trace(&[
        "docker-entrypoint.sh",
        "--max-old-space-size=512",
        "server.js",
    ]);
    let expected = [
        &start[..],
        &["/usr/local/bin/docker-entrypoint.sh:12 interpreter server.js"],
    ]
    .concat();
    check(&t, &expected, &["/usr/local/bin/node"]);
    clean(&t);

    let t = root.trace(&["docker-entrypoint.sh", "node", "server.js"]);
    let expected = [
        &start[..],
        &[
            "/usr/local/bin/docker-entrypoint.sh:12 interpreter node",
            "/usr/local/bin/docker-entrypoint.sh:12 interpreter server.js",
        ],
    ]
    .concat();
    check(&t, &expected, &["/usr/local/bin/node"]);
    clean(&t);
}

/// python: migrations run along the way, then `exec gunicorn`, a console script whose `#!`
/// names the interpreter (`python3` -> `python3.12`).
#[test]
fn django_gunicorn() {
    let root = debian("django");
    root.fixture("/app/docker-entrypoint.sh", "django-entrypoint.sh")
        .binary("/usr/local/bin/python3.12")
        .link("/usr/local/bin/python3", "python3.12")
        .link("/usr/local/bin/python", "python3")
        .fixture("/usr/local/bin/gunicorn", "gunicorn");
    let t = root.trace(&["/app/docker-entrypoint.sh", "--log-level", "info"]);
    check(
        &t,
        &[
            "argv:0 exec /app/docker-entrypoint.sh",
            "/app/docker-entrypoint.sh:1 shebang /bin/sh",
            "/app/docker-entrypoint.sh:1 symlink /usr/bin/dash",
            "/app/docker-entrypoint.sh:1 interpreter /app/docker-entrypoint.sh",
            "/app/docker-entrypoint.sh:13 exec gunicorn",
            "/app/docker-entrypoint.sh:13 path-lookup /usr/local/bin/gunicorn",
            "/usr/local/bin/gunicorn:1 shebang /usr/local/bin/python3.12",
            "/usr/local/bin/gunicorn:1 interpreter /usr/local/bin/gunicorn",
        ],
        &["/usr/local/bin/python3.12"],
    );
    clean(&t);

    // The same interpreter started by hand, through its symlinks.
    let t = root.trace(&["python", "/app/manage.py", "runserver"]);
    check(
        &t,
        &[
            "argv:0 exec python",
            "argv:0 path-lookup /usr/local/bin/python",
            "argv:0 symlink /usr/local/bin/python3.12",
            "argv:0 interpreter /app/manage.py",
        ],
        &["/usr/local/bin/python3.12"],
    );
    assert_eq!(t.warnings, ["argv: /app/manage.py: not found"]);
}

/// openjdk/temurin: `JAVA_OPTS` with a default, split into words; `java` through the
/// absolute symlinks of /etc/alternatives; `-jar`.
#[test]
fn java() {
    let root = debian("java");
    root.fixture("/opt/app/bin/start.sh", "java-start.sh")
        .binary("/usr/lib/jvm/java-17-openjdk-amd64/bin/java")
        .link(
            "/etc/alternatives/java",
            "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
        )
        .link("/usr/bin/java", "/etc/alternatives/java")
        .file("/opt/app/lib/app.jar", b"PK\x03\x04", 0o644);
    let t = root.trace(&["/opt/app/bin/start.sh", "--spring.profiles.active=prod"]);
    check(
        &t,
        &[
            "argv:0 exec /opt/app/bin/start.sh",
            "/opt/app/bin/start.sh:1 shebang /bin/bash",
            "/opt/app/bin/start.sh:1 symlink /usr/bin/bash",
            "/opt/app/bin/start.sh:1 interpreter /opt/app/bin/start.sh",
            "/opt/app/bin/start.sh:13 exec java",
            "/opt/app/bin/start.sh:13 path-lookup /usr/bin/java",
            "/opt/app/bin/start.sh:13 symlink /usr/lib/jvm/java-17-openjdk-amd64/bin/java",
            "/opt/app/bin/start.sh:13 interpreter /opt/app/lib/app.jar",
        ],
        &["/usr/lib/jvm/java-17-openjdk-amd64/bin/java"],
    );
    clean(&t);
}

/// tini as PID 1 (it stays: a terminal), an entrypoint that re-runs itself via su-exec, on
/// a busybox base where `/bin/sh -> /bin/busybox`.
#[test]
fn tini_su_exec() {
    let root = Root::new("tini");
    root.binary("/bin/busybox")
        .link("/bin/sh", "/bin/busybox")
        .binary("/sbin/tini")
        .binary("/sbin/su-exec")
        .fixture("/usr/local/bin/entrypoint.sh", "su-exec-entrypoint.sh")
        .binary("/usr/local/bin/app-server");
    let t = root.trace(&[
        "/sbin/tini",
        "-g",
        "--",
        "/usr/local/bin/entrypoint.sh",
        "app-server",
        "--port",
        "8080",
    ]);
    check(
        &t,
        &[
            "argv:0 exec /sbin/tini",
            "argv:0 wrapper /usr/local/bin/entrypoint.sh",
            "/usr/local/bin/entrypoint.sh:1 shebang /bin/sh",
            "/usr/local/bin/entrypoint.sh:1 symlink /bin/busybox",
            "/usr/local/bin/entrypoint.sh:1 interpreter /usr/local/bin/entrypoint.sh",
            "/usr/local/bin/entrypoint.sh:4 branch then",
            "/usr/local/bin/entrypoint.sh:6 exec su-exec",
            "/usr/local/bin/entrypoint.sh:6 path-lookup /sbin/su-exec",
            "/usr/local/bin/entrypoint.sh:6 wrapper /usr/local/bin/entrypoint.sh",
            "/usr/local/bin/entrypoint.sh:6 cycle /usr/local/bin/entrypoint.sh",
            "/usr/local/bin/entrypoint.sh:8 exec app-server",
            "/usr/local/bin/entrypoint.sh:8 path-lookup /usr/local/bin/app-server",
        ],
        &["/sbin/tini", "/usr/local/bin/app-server"],
    );
    clean(&t);
}

/// dumb-init (with an option taking a value) starting a node program whose `#!` line is
/// `/usr/bin/env -S node --enable-source-maps`.
#[test]
fn dumb_init_env_split_string() {
    let root = debian("dumb-init");
    root.binary("/usr/bin/dumb-init")
        .binary("/usr/local/bin/node")
        .fixture("/app/run", "node-app-run");
    let t = root.trace(&["/usr/bin/dumb-init", "--rewrite", "15:2", "--", "/app/run"]);
    check(
        &t,
        &[
            "argv:0 exec /usr/bin/dumb-init",
            "argv:0 wrapper /app/run",
            "/app/run:1 shebang /usr/bin/env",
            "/app/run:1 wrapper node",
            "/app/run:1 path-lookup /usr/local/bin/node",
            "/app/run:1 interpreter /app/run",
        ],
        &["/usr/bin/dumb-init", "/usr/local/bin/node"],
    );
    clean(&t);
}

/// `set -- server "$@"`, `shift`, `set -- /path ... "$@"`: decided from argv, no branches.
#[test]
fn set_args() {
    let root = debian("set-args");
    root.fixture("/entrypoint.sh", "set-args-entrypoint.sh")
        .binary("/usr/local/bin/myapp");
    let start = [
        "argv:0 exec /entrypoint.sh",
        "/entrypoint.sh:1 shebang /bin/sh",
        "/entrypoint.sh:1 symlink /usr/bin/dash",
        "/entrypoint.sh:1 interpreter /entrypoint.sh",
    ];
    let t = root.trace(&["/entrypoint.sh", "--verbose"]);
    let expected = [&start[..], &["/entrypoint.sh:12 exec /usr/local/bin/myapp"]].concat();
    check(&t, &expected, &["/usr/local/bin/myapp"]);
    clean(&t);
    // `docker run image sh`: an interactive shell is what runs.
    let t = root.trace(&["/entrypoint.sh", "sh"]);
    let expected = [
        &start[..],
        &[
            "/entrypoint.sh:12 exec sh",
            "/entrypoint.sh:12 path-lookup /usr/bin/sh",
            "/entrypoint.sh:12 symlink /usr/bin/dash",
        ],
    ]
    .concat();
    check(&t, &expected, &["/usr/bin/dash"]);
    clean(&t);
}

/// `run-parts` along the way: each hook it would run is followed (not `README`: not
/// executable; not `40-skipped.sh`: run-parts skips names with dots). What a hook ends in is
/// not a terminal; what it starts in the background is.
#[test]
fn run_parts() {
    let root = debian("run-parts");
    root.fixture("/entrypoint.sh", "run-parts-entrypoint.sh")
        .binary("/usr/bin/run-parts")
        .binary("/usr/bin/envsubst")
        .binary("/usr/sbin/cron")
        .binary("/usr/local/bin/app")
        .fixture("/etc/entrypoint.d/10-config", "hook-10-config")
        .fixture("/etc/entrypoint.d/20-cron", "hook-20-cron")
        .binary("/etc/entrypoint.d/30-warmup")
        .file(
            "/etc/entrypoint.d/README",
            b"not run: not executable\n",
            0o644,
        )
        .fixture("/etc/entrypoint.d/40-skipped.sh", "hook-10-config");
    let t = root.trace(&["/entrypoint.sh", "app"]);
    check(
        &t,
        &[
            "argv:0 exec /entrypoint.sh",
            "/entrypoint.sh:1 shebang /bin/sh",
            "/entrypoint.sh:1 symlink /usr/bin/dash",
            "/entrypoint.sh:1 interpreter /entrypoint.sh",
            "/entrypoint.sh:4 branch then",
            "/entrypoint.sh:5 command run-parts",
            "/entrypoint.sh:5 path-lookup /usr/bin/run-parts",
            "/entrypoint.sh:5 run-parts /etc/entrypoint.d/10-config",
            "/etc/entrypoint.d/10-config:1 shebang /bin/sh",
            "/etc/entrypoint.d/10-config:1 symlink /usr/bin/dash",
            "/etc/entrypoint.d/10-config:1 interpreter /etc/entrypoint.d/10-config",
            "/etc/entrypoint.d/10-config:3 command envsubst",
            "/etc/entrypoint.d/10-config:3 path-lookup /usr/bin/envsubst",
            "/entrypoint.sh:5 run-parts /etc/entrypoint.d/20-cron",
            "/etc/entrypoint.d/20-cron:1 shebang /bin/sh",
            "/etc/entrypoint.d/20-cron:1 symlink /usr/bin/dash",
            "/etc/entrypoint.d/20-cron:1 interpreter /etc/entrypoint.d/20-cron",
            "/etc/entrypoint.d/20-cron:3 background /usr/sbin/cron",
            "/entrypoint.sh:5 run-parts /etc/entrypoint.d/30-warmup",
            "/entrypoint.sh:7 exec app",
            "/entrypoint.sh:7 path-lookup /usr/local/bin/app",
        ],
        &["/usr/sbin/cron", "/usr/local/bin/app"],
    );
    clean(&t);

    // `exec run-parts DIR`: then the hooks are what the container runs.
    root.file(
        "/services.sh",
        b"#!/bin/sh\nexec run-parts /etc/entrypoint.d\n",
        0o755,
    );
    let t = root.trace(&["/services.sh"]);
    assert_eq!(
        t.terminals,
        [
            "/usr/bin/run-parts",
            "/usr/bin/envsubst",
            "/usr/bin/dash",
            "/usr/sbin/cron",
            "/etc/entrypoint.d/30-warmup",
        ],
        "{t:#?}"
    );
}

/// Alpine: busybox applets are terminals by their own names; the script never `exec`s, so
/// it ends in its last command and the shell stays; a sidecar runs in the background.
#[test]
fn alpine_busybox() {
    let root = Root::new("alpine");
    root.binary("/bin/busybox")
        .link("/bin/sh", "/bin/busybox")
        .link("/bin/mkdir", "/bin/busybox")
        .link("/usr/bin/tail", "/bin/busybox")
        .binary("/sbin/su-exec")
        .binary("/usr/local/bin/app-sidecar")
        .fixture("/entrypoint.sh", "alpine-entrypoint.sh");
    let t = root.trace(&["/entrypoint.sh"]);
    check(
        &t,
        &[
            "argv:0 exec /entrypoint.sh",
            "/entrypoint.sh:1 shebang /bin/sh",
            "/entrypoint.sh:1 symlink /bin/busybox",
            "/entrypoint.sh:1 interpreter /entrypoint.sh",
            "/entrypoint.sh:6 background su-exec",
            "/entrypoint.sh:6 path-lookup /sbin/su-exec",
            "/entrypoint.sh:6 wrapper /usr/local/bin/app-sidecar",
            "/entrypoint.sh:8 command tail",
            "/entrypoint.sh:8 path-lookup /usr/bin/tail",
            "/entrypoint.sh:8 symlink /bin/busybox",
        ],
        &["/usr/local/bin/app-sidecar", "/usr/bin/tail", "/bin/sh"],
    );
    clean(&t);

    // `busybox APPLET`: the applet, and a `-c` string with a single command is exec'd.
    let t = root.trace(&["busybox", "sh", "-c", "exec tail -f /dev/null"]);
    check(
        &t,
        &[
            "argv:0 exec busybox",
            "argv:0 path-lookup /bin/busybox",
            "argv:0 applet sh",
            "argv:0 shell-c /bin/busybox",
            "argv:1 exec tail",
            "argv:1 path-lookup /usr/bin/tail",
            "argv:1 symlink /bin/busybox",
        ],
        &["/usr/bin/tail"],
    );
    clean(&t);

    // An applet the image does not link is not found.
    let t = root.trace(&["sleep", "3600"]);
    check(&t, &["argv:0 exec sleep"], &[]);
    assert_eq!(
        t.warnings,
        ["argv: `sleep` not found on PATH /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    );
}

/// Sourced settings that change PATH, a sourced helper function, and a `case` on a role only
/// the environment knows: every role's program is a candidate; `migrate` does not `exec`,
/// so bash stays too.
#[test]
fn roles() {
    let root = debian("roles");
    root.fixture("/entrypoint.sh", "roles-entrypoint.sh")
        .fixture("/etc/default/app", "app-defaults")
        .fixture("/opt/app/lib/common.sh", "app-common.sh")
        .binary("/opt/app/bin/web-server")
        .binary("/opt/app/bin/worker")
        .binary("/opt/app/bin/migrate")
        .binary("/opt/app/bin/serve");
    let t = root.trace(&["/entrypoint.sh", "serve"]);
    check(
        &t,
        &[
            "argv:0 exec /entrypoint.sh",
            "/entrypoint.sh:1 shebang /bin/bash",
            "/entrypoint.sh:1 symlink /usr/bin/bash",
            "/entrypoint.sh:1 interpreter /entrypoint.sh",
            "/entrypoint.sh:4 source /etc/default/app",
            "/entrypoint.sh:5 source /opt/app/lib/common.sh",
            "/entrypoint.sh:9 branch web",
            "/entrypoint.sh:10 exec web-server",
            "/entrypoint.sh:10 path-lookup /opt/app/bin/web-server",
            "/entrypoint.sh:12 branch worker|jobs",
            "/entrypoint.sh:13 exec /opt/app/bin/worker",
            "/entrypoint.sh:18 branch *",
            "/entrypoint.sh:19 exec serve",
            "/entrypoint.sh:19 path-lookup /opt/app/bin/serve",
            "/entrypoint.sh:16 command /opt/app/bin/migrate",
        ],
        &[
            "/opt/app/bin/web-server",
            "/opt/app/bin/worker",
            "/opt/app/bin/serve",
            "/opt/app/bin/migrate",
            "/usr/bin/bash",
        ],
    );
    clean(&t);
}

/// Two services in the background and `wait`: both, and the shell waiting for them.
#[test]
fn background_and_wait() {
    let root = debian("supervise");
    root.fixture("/entrypoint.sh", "supervise-entrypoint.sh")
        .binary("/usr/sbin/nginx")
        .binary("/usr/sbin/php-fpm");
    let t = root.trace(&["/entrypoint.sh"]);
    check(
        &t,
        &[
            "argv:0 exec /entrypoint.sh",
            "/entrypoint.sh:1 shebang /bin/bash",
            "/entrypoint.sh:1 symlink /usr/bin/bash",
            "/entrypoint.sh:1 interpreter /entrypoint.sh",
            "/entrypoint.sh:4 background nginx",
            "/entrypoint.sh:4 path-lookup /usr/sbin/nginx",
            "/entrypoint.sh:5 background php-fpm",
            "/entrypoint.sh:5 path-lookup /usr/sbin/php-fpm",
        ],
        &["/usr/sbin/nginx", "/usr/sbin/php-fpm", "/usr/bin/bash"],
    );
    clean(&t);
}

/// `sh -c` in the pod spec: a single command is exec'd by the shell; several leave the shell
/// running; `cd` sets where a relative script is.
#[test]
fn shell_c() {
    let root = debian("shell-c");
    root.binary("/usr/bin/python3.11")
        .link("/usr/bin/python3", "python3.11")
        .file("/srv/app.py", b"print()\n", 0o644);
    let python = [
        "argv:1 exec python3",
        "argv:1 path-lookup /usr/bin/python3",
        "argv:1 symlink /usr/bin/python3.11",
        "argv:1 interpreter -m http.server",
    ];
    let t = root.trace(&["/bin/sh", "-c", "exec python3 -m http.server 8000"]);
    let expected = [
        &[
            "argv:0 exec /bin/sh",
            "argv:0 symlink /usr/bin/dash",
            "argv:0 shell-c /usr/bin/dash",
        ][..],
        &python,
    ]
    .concat();
    check(&t, &expected, &["/usr/bin/python3.11"]);
    clean(&t);

    let t = root.trace(&["sh", "-c", "python3 -m http.server"]);
    let expected = [
        &[
            "argv:0 exec sh",
            "argv:0 path-lookup /usr/bin/sh",
            "argv:0 symlink /usr/bin/dash",
            "argv:0 shell-c /usr/bin/dash",
        ][..],
        &python,
    ]
    .concat();
    check(&t, &expected, &["/usr/bin/python3.11"]);
    clean(&t);

    let t = root.trace(&["bash", "-ec", "cd /srv\npython3 app.py --port 80"]);
    check(
        &t,
        &[
            "argv:0 exec bash",
            "argv:0 path-lookup /usr/bin/bash",
            "argv:0 shell-c /usr/bin/bash",
            "argv:2 command python3",
            "argv:2 path-lookup /usr/bin/python3",
            "argv:2 symlink /usr/bin/python3.11",
            "argv:2 interpreter /srv/app.py",
        ],
        &["/usr/bin/python3.11", "/usr/bin/bash"],
    );
    clean(&t);
}

/// `maxDepth` cuts a chain of scripts short, and says so.
#[test]
fn max_depth() {
    let root = debian("depth");
    root.file("/a.sh", b"#!/bin/sh\nexec /b.sh \"$@\"\n", 0o755)
        .file("/b.sh", b"#!/bin/sh\nexec /c.sh \"$@\"\n", 0o755)
        .file(
            "/c.sh",
            b"#!/bin/sh\nexec /usr/local/bin/app \"$@\"\n",
            0o755,
        )
        .binary("/usr/local/bin/app");
    let argv = vec!["/a.sh".to_string()];
    let t = trace(&root.0, &argv, None, 4);
    check(
        &t,
        &[
            "argv:0 exec /a.sh",
            "/a.sh:1 shebang /bin/sh",
            "/a.sh:1 symlink /usr/bin/dash",
            "/a.sh:1 interpreter /a.sh",
            "/a.sh:2 exec /b.sh",
            "/b.sh:1 shebang /bin/sh",
            "/b.sh:1 symlink /usr/bin/dash",
            "/b.sh:1 interpreter /b.sh",
            "/b.sh:2 exec /c.sh",
        ],
        &[],
    );
    assert!(t.truncated);
    assert_eq!(
        t.warnings,
        ["/c.sh:1: not followed: maximum depth 4 reached"]
    );

    let t = trace(&root.0, &argv, None, MAX_DEPTH);
    assert_eq!(t.terminals, ["/usr/local/bin/app"]);
    clean(&t);
}

/// A script that is not there, or that does not parse: warnings, not panics.
#[test]
fn broken_scripts() {
    let root = debian("broken");
    root.file("/missing-shell.sh", b"#!/bin/zsh\nexec /x\n", 0o755)
        .file("/bad.sh", b"#!/bin/sh\nif true; then\n  exec /x\n", 0o755)
        .file(
            "/binary-garbage.sh",
            b"#!/bin/sh\n\xff\xfe\0exec \"\n",
            0o755,
        );
    // The interpreter is missing, but its name says it is a shell: the script is still read.
    let t = root.trace(&["/missing-shell.sh"]);
    assert!(t.terminals.is_empty());
    assert_eq!(
        t.warnings,
        [
            "/missing-shell.sh:1: /bin/zsh: not found",
            "/missing-shell.sh:2: /x: not found"
        ]
    );
    let t = root.trace(&["/bad.sh"]);
    assert!(t.terminals.is_empty());
    assert_eq!(
        t.warnings,
        ["/bad.sh: cannot parse (line 3: expected `fi`): not followed"]
    );
    let t = root.trace(&["/binary-garbage.sh"]);
    assert_eq!(t.warnings.len(), 1, "{t:#?}");
    assert!(
        t.warnings[0].contains("unterminated double quote"),
        "{t:#?}"
    );
}

/// `zastava-observer trace --root DIR -- ARGV...` prints the trace as one JSON document.
#[test]
fn trace_cli() {
    let root = debian("cli");
    root.fixture(
        "/usr/local/bin/docker-entrypoint.sh",
        "redis-docker-entrypoint.sh",
    )
    .binary("/usr/local/bin/redis-server");
    let out = Command::new(env!("CARGO_BIN_EXE_zastava-observer"))
        .args(["trace", "--root"])
        .arg(&root.0)
        .args([
            "--",
            "docker-entrypoint.sh",
            "redis-server",
            "--requirepass",
            "s3cret",
        ])
        .output()
        .expect("run zastava-observer");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        doc["terminals"],
        serde_json::json!(["/usr/local/bin/redis-server"])
    );
    assert_eq!(doc["truncated"], false);
    assert_eq!(doc["warnings"], serde_json::json!([]));
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(
        steps.last().unwrap(),
        &serde_json::json!({
            "file": "/usr/local/bin/docker-entrypoint.sh",
            "line": 25,
            "op": "path-lookup",
            "target": "/usr/local/bin/redis-server",
        })
    );
    assert_eq!(
        steps[0],
        serde_json::json!({"file": "argv", "line": 0, "op": "exec", "target": "docker-entrypoint.sh"})
    );
    assert!(
        !stdout.contains("s3cret"),
        "arguments are not shown: {stdout}"
    );

    // `--path` is the image's PATH.
    let out = Command::new(env!("CARGO_BIN_EXE_zastava-observer"))
        .args(["trace", "--path", "/nowhere", "--root"])
        .arg(&root.0)
        .args(["--", "redis-server"])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["terminals"], serde_json::json!([]));
    assert_eq!(
        doc["warnings"],
        serde_json::json!(["argv: `redis-server` not found on PATH /nowhere"])
    );
}
