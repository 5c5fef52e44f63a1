//! Races and faults (issue 9): concurrent `create` of one id, concurrent `delete
//! --force`, `start` racing `delete`, the VMM killed with SIGKILL, and `delete` after a
//! cleanup that stopped half-way. After each: `state` tells the truth, `delete` cleans
//! everything and the id can be used again.
//!
//! Skips (with a `SKIP:` line) when not root or QEMU, runc or the test kernel are
//! missing; fails instead when `URUNC_REQUIRE_INTEGRATION` is set.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use test_harness::bundle::{unique_id, wait_for, TestBundle, Urunc};
use test_harness::{assert_ok, fixtures, output_text};

const URUNC: &str = env!("CARGO_BIN_EXE_urunc");
const TOOLS: &[&str] = &["qemu-system-x86_64", "runc"];
const WAIT: Duration = Duration::from_secs(20);
/// How many callers race in the concurrency tests.
const RACERS: usize = 8;

/// Runs `f(i)` for i in 0..n on n threads at once and returns the results in order.
fn race<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let barrier = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    f(i)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn concurrent_creates_of_one_id_exactly_one_wins() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let b = TestBundle::waiting_testkernel("create-race", &kernel);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("rel-create-race");
    let outs = race(RACERS, |_| urunc.create(&b, &id));
    let winners = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(
        winners,
        1,
        "{winners} creates succeeded:\n{}",
        outs.iter().map(output_text).collect::<Vec<_>>().join("\n")
    );
    for o in outs.iter().filter(|o| !o.status.success()) {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("already exists") && err.contains(&id) && err.trim().lines().count() == 1,
            "loser's error is not one clear \"already exists\" line:\n{}",
            output_text(o)
        );
    }
    // The winner's container is intact: it starts and runs.
    assert_eq!(urunc.status(&id).as_deref(), Some("created"));
    assert_ok(&urunc.start(&id), "start of the winner");
    assert_eq!(urunc.status(&id).as_deref(), Some("running"));
    assert_ok(&urunc.delete_force(&id), "delete --force");
    urunc.assert_clean(&b, &id);
}

#[test]
fn concurrent_force_deletes_of_a_running_container() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let b = TestBundle::waiting_testkernel("delete-race", &kernel);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("rel-delete-race");
    urunc.create_and_start(&b, &id);
    let outs = race(RACERS, |_| urunc.delete_force(&id));
    for o in &outs {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() || err.contains("does not exist"),
            "a concurrent delete --force failed otherwise:\n{}",
            output_text(o)
        );
    }
    assert!(
        outs.iter().any(|o| o.status.success()),
        "no delete succeeded"
    );
    urunc.assert_clean(&b, &id);
    // And the id is free again.
    urunc.create_and_start(&b, &id);
    assert_ok(&urunc.delete_force(&id), "delete --force");
    urunc.assert_clean(&b, &id);
}

#[test]
fn start_racing_delete_leaves_nothing() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let b = TestBundle::waiting_testkernel("start-delete", &kernel);
    let urunc = Urunc::new(URUNC);
    for round in 0..4 {
        let id = unique_id(&format!("rel-start-delete{round}"));
        assert_ok(&urunc.create(&b, &id), "create");
        let outs = race(2, |i| {
            if i == 0 {
                urunc.start(&id)
            } else {
                urunc.delete_force(&id)
            }
        });
        // delete --force always wins in the end; start either ran first (and its VMM
        // was then killed) or found the container gone.
        assert_ok(&outs[1], "delete --force");
        let err = String::from_utf8_lossy(&outs[0].stderr);
        assert!(
            outs[0].status.success() || err.contains("does not exist"),
            "start failed otherwise:\n{}",
            output_text(&outs[0])
        );
        urunc.assert_clean(&b, &id);
    }
}

#[test]
fn vmm_killed_while_running_is_reported_stopped_and_cleaned() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let b = TestBundle::waiting_testkernel("vmm-killed", &kernel);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("rel-vmm-killed");
    let pid = urunc.create_and_start(&b, &id);
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("SIGKILL the VMM");
    assert!(
        urunc.wait_status(&id, "stopped", WAIT),
        "state after the VMM was killed: {:?}",
        urunc.state_json(&id)
    );
    assert_eq!(urunc.state_json(&id).unwrap()["pid"], 0);
    // Stopped: a plain delete (no --force) is enough.
    assert_ok(&urunc.delete(&id), "delete");
    urunc.assert_clean(&b, &id);
    // A new container with the same id runs.
    urunc.create_and_start(&b, &id);
    assert_ok(&urunc.delete_force(&id), "delete --force");
    urunc.assert_clean(&b, &id);
}

#[test]
fn container_process_killed_before_start_is_reported_stopped() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let b = TestBundle::waiting_testkernel("init-killed", &kernel);
    let urunc = Urunc::new(URUNC);
    let id = unique_id("rel-init-killed");
    assert_ok(&urunc.create(&b, &id), "create");
    let pid = urunc.pid(&id);
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("SIGKILL the container process");
    assert!(
        urunc.wait_status(&id, "stopped", WAIT),
        "state: {:?}",
        urunc.state_json(&id)
    );
    let out = urunc.start(&id);
    assert!(!out.status.success(), "start of a dead container succeeded");
    assert_ok(&urunc.delete(&id), "delete");
    urunc.assert_clean(&b, &id);
    urunc.create_and_start(&b, &id);
    assert_ok(&urunc.delete_force(&id), "delete --force");
    urunc.assert_clean(&b, &id);
}

/// The cgroup directories recorded in the container's state.
fn recorded_cgroups(urunc: &Urunc, id: &str) -> Vec<PathBuf> {
    let state = urunc.root().join(id).join("urunc-state.json");
    let v: serde_json::Value = serde_json::from_slice(&fs::read(state).unwrap()).unwrap();
    v["cgroup_dirs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| PathBuf::from(d.as_str().unwrap()))
        .collect()
}

#[test]
fn delete_after_a_partial_cleanup_is_idempotent() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let b = TestBundle::waiting_testkernel("partial", &kernel);
    let urunc = Urunc::new(URUNC);
    // What an interrupted delete can leave: the process gone and (1) the cgroups
    // removed, (2) the cgroups and the state directory's other entries removed too.
    for (round, also_files) in [false, true].into_iter().enumerate() {
        let id = unique_id(&format!("rel-partial{round}"));
        let pid = urunc.create_and_start(&b, &id);
        let cgroups = recorded_cgroups(&urunc, &id);
        assert!(!cgroups.is_empty(), "no cgroups recorded");
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
        assert!(urunc.wait_status(&id, "stopped", WAIT));
        for d in &cgroups {
            // An emptied cgroup: removable once the killed VMM is reaped.
            assert!(
                wait_for(WAIT, || fs::remove_dir(d).is_ok() || !d.exists()),
                "cannot remove {d:?} by hand"
            );
        }
        if also_files {
            for e in fs::read_dir(urunc.root().join(&id)).unwrap().flatten() {
                if e.file_name() != "urunc-state.json" {
                    let p = e.path();
                    let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
                }
            }
        }
        assert_eq!(urunc.status(&id).as_deref(), Some("stopped"));
        assert_ok(&urunc.delete(&id), "delete after a partial cleanup");
        urunc.assert_clean(&b, &id);
        // Deleting again: the id is unknown (handed to runc, which fails).
        assert!(!urunc.delete(&id).status.success());
        urunc.create_and_start(&b, &id);
        assert_ok(&urunc.delete_force(&id), "delete --force");
        urunc.assert_clean(&b, &id);
    }
}

/// A stand-in for runc that only records that it was called (and fails), so a test can
/// tell whether urunc handed a command to runc.
fn fake_runc(dir: &Path) -> (PathBuf, PathBuf) {
    let calls = dir.join("runc-calls");
    let script = dir.join("fake-runc");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\necho 'fake runc' >&2\nexit 42\n",
            calls.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    (script, calls)
}

/// The race of issue 9: `state` and `kill` on an id while `urunc create` of it runs.
/// urunc must answer every one of them itself — "does not exist" before the id is
/// reserved, "creating" (state) or a wait for the lock (kill) during the create, the
/// container afterwards — and never hand one to runc, whose `delete` would remove the
/// directory of an id it does not know.
#[test]
fn commands_racing_create_are_never_handed_to_runc() {
    let Some(kernel) = fixtures::testkernel_with(TOOLS) else {
        return;
    };
    let mut b = TestBundle::waiting_testkernel("create-commands", &kernel);
    // A create alone takes a few milliseconds, which the racing commands may all miss:
    // a createRuntime hook that sleeps holds each create open (the container is
    // "creating" and its lock held) for long enough that some of them land inside it.
    b.hook("createRuntime", "/bin/sleep", &["sleep", "0.2"], &[]);
    let (runc, calls) = fake_runc(b.dir());
    let urunc = Urunc::new(URUNC).env("URUNC_RUNC", &runc);
    let rounds = 6;
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..rounds {
        let id = unique_id(&format!("rel-create-commands{round}"));
        let done = std::sync::atomic::AtomicBool::new(false);
        let answers = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            let creator = s.spawn(|| {
                let out = urunc.create(&b, &id);
                done.store(true, std::sync::atomic::Ordering::SeqCst);
                out
            });
            for cmd in ["state", "kill"] {
                let (urunc, id, done, answers) = (&urunc, &id, &done, &answers);
                s.spawn(move || {
                    // Until create is over, and a few more once it is.
                    let mut after = 0;
                    while after < 3 {
                        if done.load(std::sync::atomic::Ordering::SeqCst) {
                            after += 1;
                        }
                        let out = match cmd {
                            "state" => urunc.state(id),
                            // SIGCONT: harmless to the process waiting for `start`.
                            _ => urunc.kill(id, "CONT"),
                        };
                        answers.lock().unwrap().push((cmd, out));
                    }
                });
            }
            assert_ok(&creator.join().unwrap(), "create");
        });
        for (cmd, out) in answers.into_inner().unwrap() {
            let err = String::from_utf8_lossy(&out.stderr);
            let answer = if out.status.success() {
                match cmd {
                    "state" => {
                        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
                            .unwrap_or_else(|e| panic!("state output: {e}\n{}", output_text(&out)));
                        format!("state: {}", v["status"].as_str().unwrap_or("?"))
                    }
                    _ => "kill: delivered".to_string(),
                }
            } else if err.contains("does not exist") && err.contains("urunc: ") {
                format!("{cmd}: does not exist")
            } else {
                panic!(
                    "{cmd} answered otherwise during create:\n{}",
                    output_text(&out)
                );
            };
            assert!(
                answer != "state: stopped",
                "a container being created was reported stopped"
            );
            *seen.entry(answer).or_default() += 1;
        }
        assert_eq!(urunc.status(&id).as_deref(), Some("created"));
        assert_ok(&urunc.start(&id), "start after the race");
        assert_ok(&urunc.delete_force(&id), "delete --force");
        urunc.assert_clean(&b, &id);
    }
    eprintln!("answers during {rounds} creates: {seen:?}");
    let runc_calls = fs::read_to_string(&calls).unwrap_or_default();
    assert!(
        runc_calls.is_empty(),
        "commands were handed to runc:\n{runc_calls}"
    );
    assert!(
        seen.contains_key("state: creating"),
        "no state call landed inside a create: the race was not exercised ({seen:?})"
    );
}
