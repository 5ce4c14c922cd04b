//! Every script kismatic runs on a node, in one place (docs/node-contract.md). The text is constant; plan and
//! release values reach a script only as positional arguments, each quoted by the transport. The contract's paths
//! come first, as shell variables (quoted), so a script never spells a path of its own:
//! `opt` ([`OPT`]), `staging` ([`STAGING`]), `digest_marker` ([`DIGEST_MARKER`]), `version_marker`
//! ([`KISMATIC_VERSION_FILE`]), `versions_marker` ([`COMPONENT_VERSIONS_FILE`]), `unit_dir` ([`UNIT_DIR`]).

use super::{COMPONENT_VERSIONS_FILE, DIGEST_MARKER, KISMATIC_VERSION_FILE, OPT, STAGING, UNIT_DIR};
use std::sync::OnceLock;

/// A node-side script: its constant body behind the contract's path variables. Run it as
/// `sh -c TEXT NAME ARGS...` ([`Script::text`]).
pub struct Script {
    body: &'static str,
    text: OnceLock<String>,
}

impl Script {
    const fn new(body: &'static str) -> Self {
        Script { body, text: OnceLock::new() }
    }

    /// The whole script: the path variables, then the body.
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| {
            let vars = [
                ("opt", OPT),
                ("staging", STAGING),
                ("digest_marker", DIGEST_MARKER),
                ("version_marker", KISMATIC_VERSION_FILE),
                ("versions_marker", COMPONENT_VERSIONS_FILE),
                ("unit_dir", UNIT_DIR),
            ];
            let mut text: String = vars.iter().map(|(k, v)| format!("{k}={}\n", sh_quote(v))).collect();
            text.push_str(self.body);
            text
        })
    }
}

/// One shell word: single-quoted, an embedded `'` closed, escaped and reopened.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

// Prints `exe <path>` for the active service `$service`'s main process (nothing when the service is not active).
macro_rules! report_running_exe {
    () => {
        r#"
if systemctl is-active -q "$service" 2>/dev/null; then
  pid=$(systemctl show -p MainPID --value "$service")
  printf 'exe %s\n' "$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
fi
"#
    };
}

/// Reports, for each (kind, name, version, sha256) quadruple, what is already in place: `ready NAME` when the
/// binary's versioned directory exists with the artifact's digest in its marker, or the package is installed at the
/// version; `staged NAME` when the package file is waiting in the staging folder.
pub static STAGE_STATE: Script = Script::new(STAGE_STATE_BODY);
const STAGE_STATE_BODY: &str = r#"
while [ $# -ge 4 ]; do
  kind=$1 name=$2 version=$3 sha=$4
  shift 4
  case $kind in
    binary) [ "$(cat "$opt/$name/$version/$digest_marker" 2>/dev/null)" = "$sha" ] && printf 'ready %s\n' "$name" ;;
    package)
      s=$(dpkg-query -W -f '${db:Status-Status} ${Version}' -- "$name" 2>/dev/null || true)
      [ "$s" = "installed $version" ] && printf 'ready %s\n' "$name"
      [ -f "$staging/${name}_$version.deb" ] && printf 'staged %s\n' "$name" ;;
  esac
done
true
"#;

/// Receives one artifact on stdin, checks its digest, then either unpacks it into each listed component's versioned
/// directory (`tar NAME VERSION ...`; hidden folder + rename, so a directory that exists is complete; the digest is
/// recorded inside it, and a directory with another digest is replaced) or keeps it as a package file
/// (`deb PATH`). Exit 3: digest mismatch.
pub static STAGE: Script = Script::new(STAGE_BODY);
const STAGE_BODY: &str = r#"
set -eu
sha=$1 kind=$2
shift 2
mkdir -p "$staging"
tmp=$(mktemp "$staging/.upload.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat > "$tmp"
actual=$(sha256sum "$tmp" | cut -d' ' -f1)
if [ "$actual" != "$sha" ]; then
  echo "artifact digest mismatch: expected sha256 $sha, node computed $actual" >&2
  exit 3
fi
case $kind in
  tar)
    while [ $# -ge 2 ]; do
      base=$opt/$1 version=$2
      shift 2
      [ "$(cat "$base/$version/$digest_marker" 2>/dev/null)" = "$sha" ] && continue
      rm -rf "$base/.$version.tmp" "$base/.$version.old"
      mkdir -p "$base/.$version.tmp"
      tar -xzf "$tmp" -C "$base/.$version.tmp"
      printf '%s\n' "$sha" > "$base/.$version.tmp/$digest_marker"
      if [ -e "$base/$version" ]; then mv -T "$base/$version" "$base/.$version.old"; fi
      mv -T "$base/.$version.tmp" "$base/$version"
      rm -rf "$base/.$version.old"
    done ;;
  deb) chmod 644 "$tmp" && mv -f "$tmp" "$1" ;;
esac
"#;

/// Makes a staged binary component current: switches `current` atomically keeping `previous`, writes the unit from
/// its text. Prints `changed` when anything changed, then what the service runs. Exit 4: the version is not staged
/// (or its directory's digest marker does not name `$6`).
pub static ACTIVATE_BINARY: Script = Script::new(ACTIVATE_BINARY_BODY);
const ACTIVATE_BINARY_BODY: &str = concat!(
    r#"
set -eu
name=$1 version=$2 service=$3 has_unit=$4 unit_text=$5 sha=$6
base=$opt/$name
[ "$(cat "$base/$version/$digest_marker" 2>/dev/null)" = "$sha" ] || exit 4
changed=0
cur=$(readlink "$base/current" 2>/dev/null || true)
if [ "$cur" != "$version" ]; then
  if [ -n "$cur" ]; then
    ln -sfn "$cur" "$base/.previous.tmp" && mv -T "$base/.previous.tmp" "$base/previous"
  fi
  ln -sfn "$version" "$base/.current.tmp" && mv -T "$base/.current.tmp" "$base/current"
  changed=1
fi
if [ "$has_unit" = 1 ]; then
  unit=$unit_dir/$service.service
  tmp=$(mktemp "$unit.XXXXXX")
  printf '%s' "$unit_text" > "$tmp"
  if cmp -s "$tmp" "$unit"; then
    rm -f "$tmp"
  else
    chmod 644 "$tmp" && mv -f "$tmp" "$unit"
    # Only where systemd is the init (as maintainer scripts check); elsewhere there is nothing to reload.
    if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
    changed=1
  fi
fi
[ "$changed" = 1 ] && echo changed || true
"#,
    report_running_exe!()
);

/// Installs a staged package file at its pinned version unless that version is installed; checks the digest again
/// (the file sat on the node) and the installed version after. Prints `changed` or `unchanged`. Exit 3: digest
/// mismatch; exit 4: not staged; exit 5: apt-get failed (its messages on stderr).
pub static PACKAGE_INSTALL: Script = Script::new(PACKAGE_INSTALL_BODY);
const PACKAGE_INSTALL_BODY: &str = r#"
pkg=$1 version=$2 sha=$3 deb=$4
status() { dpkg-query -W -f '${db:Status-Status} ${Version}' -- "$pkg" 2>/dev/null || true; }
if [ "$(status)" = "installed $version" ]; then echo unchanged; exit 0; fi
[ -f "$deb" ] || exit 4
actual=$(sha256sum "$deb" | cut -d' ' -f1)
if [ "$actual" != "$sha" ]; then
  echo "staged package digest mismatch: expected sha256 $sha, node computed $actual" >&2
  rm -f "$deb"
  exit 3
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades -o Dpkg::Options::=--force-confold "$deb" >/dev/null || exit 5
rm -f "$deb"
now=$(status)
if [ "$now" != "installed $version" ]; then echo "after apt-get install, $pkg is: ${now:-not installed}" >&2; exit 5; fi
echo changed
"#;

/// Switches `current` back to `previous` (rollback of one member).
pub static BINARY_ROLLBACK: Script = Script::new(BINARY_ROLLBACK_BODY);
const BINARY_ROLLBACK_BODY: &str = r#"
set -eu
name=$1 service=$2
base=$opt/$name
prev=$(readlink "$base/previous")
ln -sfn "$prev" "$base/.current.tmp" && mv -T "$base/.current.tmp" "$base/current"
systemctl restart "$service"
echo "$prev"
"#;

/// What the service runs (node contract's running-version rule, applied in `running_from`).
pub static RUNNING_EXE: Script = Script::new(RUNNING_EXE_BODY);
const RUNNING_EXE_BODY: &str = concat!("service=$1\n", report_running_exe!());

/// Asks `/healthz` on the node itself, at each address in turn (the node's own address, then loopback): with curl
/// when the node has it (HTTPS as Kubernetes serves it, then plain HTTP), else a plain HTTP/1.0 request through
/// bash's /dev/tcp. Prints `healthy` or exits 1.
pub static HEALTHZ: Script = Script::new(HEALTHZ_BODY);
const HEALTHZ_BODY: &str = r#"
port=$1
shift
for addr in "$@"; do
  if command -v curl >/dev/null 2>&1; then
    if curl -fsk --max-time 2 -o /dev/null "https://$addr:$port/healthz" 2>/dev/null \
      || curl -fs --max-time 2 -o /dev/null "http://$addr:$port/healthz" 2>/dev/null; then
      echo healthy; exit 0
    fi
  elif exec 3<>"/dev/tcp/$addr/$port"; then
    printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$addr" >&3
    status=$(timeout 2 head -n 1 <&3)
    exec 3<&-
    case "$status" in "HTTP/1."?" 200"*) echo healthy; exit 0 ;; esac
  fi 2>/dev/null
done
exit 1
"#;

/// Saves a snapshot into a private folder (0700; the file 0600: it holds every secret of the cluster), then removes
/// all but the `$3` most recent of this cluster's snapshots. `$1` folder, `$2` file, `$3` keep, `$4` the cluster's
/// file prefix; the rest is the etcdctl command line (`snapshot save FILE` is appended).
pub static SNAPSHOT_SAVE: Script = Script::new(SNAPSHOT_SAVE_BODY);
const SNAPSHOT_SAVE_BODY: &str = r#"set -eu
dir=$1 file=$2 keep=$3 prefix=$4
shift 4
umask 077
mkdir -p -- "$dir"
chmod 700 -- "$dir"
"$@" snapshot save "$file" >/dev/null
chmod 600 -- "$file"
ls -1t -- "$dir" | grep -E "^$prefix-[0-9TZ]+\.db$" | tail -n "+$((keep + 1))" | while read -r old; do
  rm -f -- "$dir/$old"
done
"#;

/// Takes the lock, waiting a few seconds (a run that has just ended may still be closing its holder's session on
/// the node), and holds it until end of input. `$1` lock file, `$2` who holds it. Prints `locked`, or `busy` and
/// the holder (exit 75).
pub static LOCK_SCRIPT: Script = Script::new(LOCK_SCRIPT_BODY);
const LOCK_SCRIPT_BODY: &str = r#"set -u
f=$1 holder=$2
mkdir -p -- "${f%/*}" && chmod 700 -- "${f%/*}"
exec 9>>"$f"
if ! flock -w 10 9; then
  echo busy
  cat -- "$f.holder" 2>/dev/null
  exit 75
fi
printf '%s\n' "$holder" > "$f.holder"
echo locked
cat > /dev/null
rm -f -- "$f.holder"
"#;

/// Writes both markers, each replaced atomically (a hidden temporary beside it, renamed); the version marker
/// last, so a node whose version marker names the new release always has the matching component list.
/// `$1` the component-versions text, `$2` the version.
pub static WRITE_MARKERS: Script = Script::new(WRITE_MARKERS_BODY);
const WRITE_MARKERS_BODY: &str = r#"
set -eu
put() {
  tmp="${1%/*}/.${1##*/}.kismatic-tmp"
  printf '%s' "$2" > "$tmp"
  chmod 644 "$tmp"
  mv -f "$tmp" "$1"
}
put "$versions_marker" "$1"
put "$version_marker" "$2"
"#;

/// The probe. `set -f`: no globbing of values; discovery turns it back on for its one glob.
/// Arguments: groups of four `name delivery service package` (package empty for binaries). With no arguments,
/// every folder under [`OPT`] is probed as a binary component whose service has its name.
pub static PROBE_SCRIPT: Script = Script::new(PROBE_SCRIPT_BODY);
const PROBE_SCRIPT_BODY: &str = r#"set -f
printf 'kismatic-probe\t1\n'
emit_file() {
  if [ -e "$1" ] || [ -L "$1" ]; then
    printf 'file\t%s\n' "$1"
    od -An -v -tx1 -N 65537 -- "$1" 2>/dev/null || printf 'unreadable\n'
    printf 'endfile\n'
  else
    printf 'missing\t%s\n' "$1"
  fi
}
emit_file "$version_marker"
emit_file "$versions_marker"
if s=$(stat -f -c '%a %S' / 2>/dev/null); then printf 'statfs\t/\t%s\n' "$s"; fi
if command -v systemctl >/dev/null 2>&1; then have_systemctl=1; else have_systemctl=; fi
comp() {
  printf 'component\t%s\t%s\n' "$1" "$2"
  if [ "$2" = binary ]; then
    if t=$(readlink -- "$opt/$1/current" 2>/dev/null); then printf 'link\t%s\n' "$t"; fi
  elif [ "$2" = package ] && [ -n "$4" ]; then
    if v=$(dpkg-query -W -f '${Version}' -- "$4" 2>/dev/null); then printf 'dpkg\t%s\n' "$v"; fi
  fi
  pid=
  if [ -n "$have_systemctl" ] && [ -n "$3" ]; then
    u=$(systemctl show -p LoadState -p ActiveState -p MainPID -- "$3.service" 2>/dev/null) || u=
    for l in $u; do
      printf 'unit\t%s\n' "$l"
      case $l in MainPID=*) pid=${l#MainPID=} ;; esac
    done
  fi
  if [ -n "$pid" ] && [ "$pid" != 0 ]; then
    if e=$(readlink "/proc/$pid/exe" 2>/dev/null); then printf 'exe\t%s\n' "$e"; fi
    case $1 in
      kube-controller-manager|kube-scheduler) api_clients "$pid" ;;
      kube-apiserver) audit_calls "$pid" ;;
    esac
  fi
  printf 'endcomponent\n'
}
# Whom a controller talks to: its command line (for --master) and the files its --kubeconfig/--config name, plus
# the kubeconfig a --config file names (a KubeSchedulerConfiguration's clientConnection.kubeconfig).
api_clients() {
  printf 'cmdline\n'
  od -An -v -tx1 -N 65536 -- "/proc/$1/cmdline" 2>/dev/null
  printf 'endcmdline\n'
  next=
  for a in $(tr '\000' '\n' < "/proc/$1/cmdline" 2>/dev/null); do
    if [ -n "$next" ]; then client_file "$a"; next=; continue; fi
    case $a in
      --kubeconfig=*|--config=*) client_file "${a#*=}" ;;
      --kubeconfig|--config) next=1 ;;
    esac
  done
}
client_file() {
  emit_file "$1"
  k=$(sed -n 's/^[[:space:]]*kubeconfig:[[:space:]]*//p' -- "$1" 2>/dev/null | head -n 1)
  k=${k%\"}; k=${k#\"}; k=${k%\'}; k=${k#\'}
  if [ -n "$k" ]; then emit_file "$k"; fi
}
# Who called deprecated APIs: the API server marks such requests with the audit annotation k8s.io/deprecated; its
# audit log (--audit-log-path) is aggregated here, on the node, by caller and API, so the report stays small
# whatever the log's size. Only completed requests count (the annotation is set when a request ends).
audit_calls() {
  log=; next=
  for a in $(tr '\000' '\n' < "/proc/$1/cmdline" 2>/dev/null); do
    if [ -n "$next" ]; then log=$a; next=; continue; fi
    case $a in
      --audit-log-path=*) log=${a#*=} ;;
      --audit-log-path) next=1 ;;
    esac
  done
  if [ -z "$log" ] || [ "$log" = - ]; then printf 'audit\tnot-kept\n'; return; fi
  if [ ! -r "$log" ]; then printf 'audit\tunreadable\t%s\n' "$log"; return; fi
  since=$(head -n 1 -- "$log" 2>/dev/null | sed -n 's/.*"requestReceivedTimestamp":"\([^"]*\)".*/\1/p')
  printf 'audit\tread\t%s\t%s\n' "$log" "$since"
  grep -F '"k8s.io/deprecated":"true"' -- "$log" 2>/dev/null | awk '
    function val(s, k,   i) {
      i = index(s, "\"" k "\":\"")
      if (i == 0) return ""
      s = substr(s, i + length(k) + 4)
      return substr(s, 1, index(s, "\"") - 1)
    }
    {
      st = val($0, "stage")
      if (st != "ResponseComplete" && st != "Panic") next
      i = index($0, "\"objectRef\":{")
      if (i == 0) next
      o = substr($0, i + 12)
      o = substr(o, 1, index(o, "}"))
      k = val($0, "username") "\t" val($0, "userAgent") "\t" val(o, "apiGroup") "\t" val(o, "apiVersion") "\t" val(o, "resource") "\t" val(o, "subresource") "\t" val($0, "k8s.io/removed-release")
      t = val($0, "requestReceivedTimestamp")
      if (!(k in n)) {
        if (keys >= 200) { over = 1; next }
        keys++
        first[k] = t
      }
      n[k]++
      last[k] = t
    }
    END {
      for (k in n) printf "call\t%s\t%d\t%s\t%s\n", k, n[k], first[k], last[k]
      if (over) print "calls-truncated"
    }'
  printf 'endaudit\n'
}
if [ $# -eq 0 ]; then
  set +f
  for d in "$opt"/*/; do
    [ -d "$d" ] || continue
    n=${d%/}; n=${n##*/}
    comp "$n" binary "$n" ""
  done
  set -f
else
  while [ $# -ge 4 ]; do comp "$1" "$2" "$3" "$4"; shift 4; done
fi
printf 'end\n'
"#;

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [&Script; 11] = [
        &STAGE_STATE,
        &STAGE,
        &ACTIVATE_BINARY,
        &PACKAGE_INSTALL,
        &BINARY_ROLLBACK,
        &RUNNING_EXE,
        &HEALTHZ,
        &SNAPSHOT_SAVE,
        &LOCK_SCRIPT,
        &WRITE_MARKERS,
        &PROBE_SCRIPT,
    ];

    /// The bodies spell no contract path of their own: every one comes from the variables.
    #[test]
    fn bodies_spell_no_contract_path() {
        for s in ALL {
            for path in
                ["/opt/", "/etc/kismatic", "/var/cache/kismatic", "/var/lib/kismatic", "/etc/component", "/etc/systemd"]
            {
                assert!(!s.body.contains(path), "{path} in {}", s.body);
            }
        }
    }

    /// Each script is valid `sh` (parsed with `sh -n`), and the path variables hold the contract's paths.
    #[test]
    fn scripts_parse_and_set_the_paths() {
        for s in ALL {
            let shell = if std::ptr::eq(s, &HEALTHZ) { "bash" } else { "sh" };
            let out = std::process::Command::new(shell).args(["-n", "-c", s.text()]).output().expect("sh");
            assert!(out.status.success(), "{}: {}", String::from_utf8_lossy(&out.stderr), s.body);
        }
        let probe = format!(
            "{}\nprintf '%s|%s|%s|%s|%s|%s' \"$opt\" \"$staging\" \"$digest_marker\" \"$version_marker\" \"$versions_marker\" \"$unit_dir\"",
            &STAGE.text()[..STAGE.text().len() - STAGE.body.len()]
        );
        let out = std::process::Command::new("sh").args(["-c", &probe]).output().expect("sh");
        let want = [OPT, STAGING, DIGEST_MARKER, KISMATIC_VERSION_FILE, COMPONENT_VERSIONS_FILE, UNIT_DIR].join("|");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }

    /// The marker writer replaces both files whole, leaving no temporary beside them.
    #[test]
    fn markers_are_written_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (version, versions) = (dir.path().join("kismatic-version"), dir.path().join("component-versions"));
        std::fs::write(&version, "old and longer").expect("old marker");
        let text = format!(
            "version_marker={}\nversions_marker={}\n{}",
            sh_quote(&version.display().to_string()),
            sh_quote(&versions.display().to_string()),
            WRITE_MARKERS.body
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &text, "kismatic-markers", "etcd: \"3.5.1\"\n", "1.1.0"])
            .output()
            .expect("sh");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read_to_string(&version).expect("version"), "1.1.0");
        assert_eq!(std::fs::read_to_string(&versions).expect("versions"), "etcd: \"3.5.1\"\n");
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 2, "no temporaries left");
    }

    /// A snapshot lands 0600 in a folder made 0700, and only the `keep` most recent of its cluster stay (another
    /// cluster's are not touched). The stand-in for etcdctl writes the file it is asked to save.
    #[test]
    fn snapshots_are_private_and_pruned_to_the_most_recent() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("backups");
        std::fs::create_dir(&dir).expect("dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let old = ["etcd-20260101T000000Z.db", "etcd-20260102T000000Z.db", "etcd-20260103T000000Z.db"];
        for (i, name) in old.iter().enumerate() {
            let f = dir.join(name);
            std::fs::write(&f, "old").expect("old snapshot");
            let at = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 * (i as u64 + 1));
            std::fs::File::options().write(true).open(&f).and_then(|f| f.set_modified(at)).expect("mtime");
        }
        std::fs::write(dir.join("etcd-networking-20260101T000000Z.db"), "other cluster").expect("other");
        let file = dir.join("etcd-20261202T180000Z.db");
        let (d, f) = (dir.display().to_string(), file.display().to_string());
        let out = std::process::Command::new("sh")
            .args(["-c", SNAPSHOT_SAVE.text(), "kismatic-snapshot", &d, &f, "3", "etcd"])
            .args(["sh", "-c", "printf snapshot > \"$3\"", "etcdctl"])
            .output()
            .expect("sh");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let mode = |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read_to_string(&file).expect("snapshot"), "snapshot");
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).expect("dir").flatten().map(|e| e.file_name().to_string_lossy().into()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "etcd-20260102T000000Z.db",
                "etcd-20260103T000000Z.db",
                "etcd-20261202T180000Z.db",
                "etcd-networking-20260101T000000Z.db"
            ]
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("/a b"), "'/a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
    }
}
