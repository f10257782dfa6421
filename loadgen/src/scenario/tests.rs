//! Parsing and validation of scenarios, including every file shipped in `scenarios/`.
use super::*;

const GOOD: &str = r#"
name = "t"
seed = 1
protocols = ["twopc", "saga-orchestrated"]
[load]
mode = "open"
rate = 100.0
duration_s = 10
[dataset]
customers = 100
skus = 10
balance_cents = [1000, 2000]
stock = [10, 20]
price_cents = [100, 200]
"#;

fn error_of(text: &str) -> String {
    Scenario::parse(text, Path::new("t.toml"))
        .unwrap_err()
        .to_string()
}

#[test]
fn a_good_scenario_parses_with_defaults() {
    let s = Scenario::parse(GOOD, Path::new("t.toml")).unwrap();
    assert_eq!(
        s.protocols,
        vec![Protocol::Twopc, Protocol::SagaOrchestrated]
    );
    assert_eq!(s.load.arrivals, Arrivals::Poisson);
    assert_eq!(s.deadline_ms, 1_000);
    assert_eq!(s.workload.lines, (1, 3));
}

#[test]
fn errors_name_the_field_and_why() {
    let e = error_of(&GOOD.replace("rate = 100.0", "rat = 100.0"));
    assert!(
        e.contains("load") && e.contains("unknown field `rat`"),
        "{e}"
    );
    let e = error_of(&GOOD.replace("rate = 100.0", "rate = \"fast\""));
    assert!(e.contains("load.rate") && e.contains("invalid type"), "{e}");
    let e = error_of(&GOOD.replace("rate = 100.0", "rate = -5.0"));
    assert!(e.contains("load.rate: must be in (0, 1000000]"), "{e}");
    let e = error_of(&GOOD.replace("\"saga-orchestrated\"", "\"paxos\""));
    assert!(e.contains("protocols[1]") && e.contains("paxos"), "{e}");
    let e = error_of(&GOOD.replace("rate = 100.0", "rate = 100.0\nclients = 4"));
    assert!(
        e.contains("load.clients: only a closed loop has clients"),
        "{e}"
    );
    let e = error_of(&GOOD.replace("stock = [10, 20]", "stock = [20, 10]"));
    assert!(e.contains("dataset.stock"), "{e}");
    let e = error_of(
        &GOOD
            .replace("skus = 10", "skus = 2")
            .replace("[dataset]", "[workload]\nlines = [1, 3]\n[dataset]"),
    );
    assert!(e.contains("workload.lines"), "{e}");
    let e = error_of(&GOOD.replace("duration_s = 10", "duration_s = 0"));
    assert!(e.contains("load.duration_s"), "{e}");
    let e = error_of(&format!("{GOOD}\n[saga]\nadmission_reserve_ms = 1000\n"));
    assert!(
        e.contains("saga.admission_reserve_ms: must be below deadline_ms (1000)"),
        "{e}"
    );
    let e = error_of(&format!("{GOOD}\n[saga]\nmax_in_flight = 0\n"));
    assert!(e.contains("saga.max_in_flight"), "{e}");
}

#[test]
fn the_topology_is_single_by_default_and_a_bad_one_names_the_field() {
    let s = Scenario::parse(GOOD, Path::new("t.toml")).unwrap();
    assert_eq!(s.topology, common::env::Topology::Single);
    let text = format!("topology = \"replicated\"\n{GOOD}");
    let s = Scenario::parse(&text, Path::new("t.toml")).unwrap();
    assert_eq!(s.topology, common::env::Topology::Replicated);
    let e = error_of(&format!("topology = \"mesh\"\n{GOOD}"));
    assert!(e.contains("topology") && e.contains("mesh"), "{e}");
}

#[test]
fn every_shipped_scenario_is_valid_and_random_draws_from_its_seed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue; // the README
        }
        let s = Scenario::load(path.to_str().unwrap(), &dir)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        names.push(s.name);
    }
    for kind in [
        "partition",
        "delay",
        "reset",
        "crash",
        "pause",
        "isolate",
        "surge",
    ] {
        let s = Scenario::load(kind, &dir).unwrap();
        assert_eq!(s.faults.len(), 1, "{kind}");
        assert_eq!(s.faults[0].kind.as_str(), kind);
    }
    let mut random = Scenario::load("random", &dir).unwrap();
    let first = random.faults.clone();
    assert_eq!(first.len(), 2);
    random.reseed(random.seed + 1, Path::new("random")).unwrap();
    assert_ne!(random.faults, first, "another seed, another schedule");
    assert!(names.contains(&"faults".to_string()), "{names:?}");
}

#[test]
fn random_faults_and_a_fixed_schedule_do_not_mix() {
    let text = with_faults(
        "[[faults]]\nkind = \"partition\"\ntarget = \"payment\"\nat_s = 2\nduration_s = 3\n\
         [random_faults]\ncount = 1\nduration_s = [1, 2]\n",
    );
    let err = Scenario::parse(&text, Path::new("t.toml")).unwrap_err();
    assert!(err.to_string().contains("random_faults"), "{err}");
}

fn with_faults(faults: &str) -> String {
    format!("{GOOD}{faults}")
}

#[test]
fn a_fault_schedule_parses_and_its_errors_name_the_entry_and_field() {
    let good = with_faults(
        "[[faults]]\nkind = \"partition\"\ntarget = \"payment\"\nat_s = 2\nduration_s = 3\n\
         [[faults]]\nkind = \"delay\"\ntarget = \"inventory\"\nat_s = 2\nduration_s = 3\nlatency_ms = 20\n",
    );
    let s = Scenario::parse(&good, Path::new("t.toml")).unwrap();
    assert_eq!(s.faults.len(), 2);
    assert_eq!(s.faults[1].label(), "delay inventory +20 ms 2–5 s");
    // A database fault and its service's fault may overlap: they act on different links.
    let both = with_faults(
        "[[faults]]\nkind = \"partition\"\ntarget = \"payment\"\nat_s = 2\nduration_s = 3\n\
         [[faults]]\nkind = \"crash\"\ntarget = \"payment_db\"\nat_s = 2\nduration_s = 3\n",
    );
    let s = Scenario::parse(&both, Path::new("t.toml")).unwrap();
    assert_eq!(s.faults[1].label(), "crash payment_db 2–5 s");

    let cases = [
        (
            "[[faults]]\nkind = \"delay\"\ntarget = \"payment\"\nat_s = 1\nduration_s = 2\n",
            "faults[0].latency_ms: a delay needs latency_ms",
        ),
        (
            "[[faults]]\nkind = \"crash\"\ntarget = \"payment\"\nat_s = 8\nduration_s = 5\n",
            "faults[0].duration_s: the fault ends at 13 s, after the measured load",
        ),
        (
            "[[faults]]\nkind = \"crash\"\ntarget = \"client\"\nat_s = 1\nduration_s = 2\n",
            "faults[0].target: the client is the load generator itself",
        ),
        (
            "[[faults]]\nkind = \"crash\"\ntarget = \"paymnet\"\nat_s = 1\nduration_s = 2\n",
            "faults[0].target: unknown variant `paymnet`",
        ),
        (
            "[[faults]]\nkind = \"reset\"\ntarget = \"order\"\nat_s = 1\nduration_s = 2\nlatency_ms = 5\n",
            "faults[0].latency_ms: only a delay has a latency",
        ),
        (
            "[[faults]]\nkind = \"reset\"\ntarget = \"order\"\nat_s = 1\nduration_s = 4\n\
             [[faults]]\nkind = \"crash\"\ntarget = \"order\"\nat_s = 3\nduration_s = 2\n",
            "faults[1].at_s: overlaps faults[0] on the same target (order)",
        ),
        (
            "[[faults]]\nkind = \"partition\"\ntarget = \"broker\"\nat_s = 1\nduration_s = 4\n\
             [[faults]]\nkind = \"delay\"\ntarget = \"payment\"\nat_s = 2\nduration_s = 1\nlatency_ms = 5\n",
            "faults[1].at_s: overlaps faults[0] (partition broker 1–5 s), which acts on links payment shares",
        ),
        (
            "[[faults]]\nkind = \"surge\"\ntarget = \"client\"\nat_s = 1\nduration_s = 2\n",
            "faults[0].factor: a surge needs factor",
        ),
        (
            "[[faults]]\nkind = \"surge\"\ntarget = \"client\"\nat_s = 1\nduration_s = 2\nfactor = 0.5\n",
            "faults[0].factor: must be in (1, 100], got 0.5",
        ),
        (
            "[[faults]]\nkind = \"surge\"\ntarget = \"payment\"\nat_s = 1\nduration_s = 2\nfactor = 2.0\n",
            "faults[0].target: a surge acts on the offered load",
        ),
        (
            "[[faults]]\nkind = \"pause\"\ntarget = \"payment\"\nat_s = 1\nduration_s = 2\nfactor = 2.0\n",
            "faults[0].factor: only a surge has a factor",
        ),
        (
            "[[faults]]\nkind = \"pause\"\ntarget = \"client\"\nat_s = 1\nduration_s = 2\n",
            "faults[0].target: the client is the load generator itself; pause a service",
        ),
        (
            "[[faults]]\nkind = \"isolate\"\ntarget = \"order\"\nat_s = 1\nduration_s = 4\n\
             [[faults]]\nkind = \"delay\"\ntarget = \"client\"\nat_s = 2\nduration_s = 1\nlatency_ms = 5\n",
            "faults[1].at_s: overlaps faults[0] (isolate order 1–5 s), which acts on links client shares",
        ),
        (
            "[[faults]]\nkind = \"pause\"\ntarget = \"payment_db\"\nat_s = 1\nduration_s = 2\n",
            "faults[0].kind: a database (payment_db) can be crashed, or its link partitioned, delayed or reset; not pause",
        ),
    ];
    for (faults, expected) in cases {
        let e = error_of(&with_faults(faults));
        assert!(e.contains(expected), "expected {expected:?} in: {e}");
    }
}

#[test]
fn command_line_overrides_replace_the_load_and_errors_name_the_flag() {
    use crate::cli::LoadArgs;
    let mut s = Scenario::parse(GOOD, Path::new("t.toml")).unwrap();
    let given = LoadArgs {
        rate: Some(250.0),
        duration: Some(30),
        warmup: Some(0),
        clients: None,
        repeat: Some(3),
    };
    assert_eq!(s.load.repeat, 1, "one run per protocol unless asked");
    s.override_load(&given).unwrap();
    assert_eq!(
        (
            s.load.rate,
            s.load.duration_s,
            s.load.warmup_s,
            s.load.repeat
        ),
        (Some(250.0), 30, 0, 3)
    );
    let no_runs = LoadArgs {
        repeat: Some(0),
        ..LoadArgs::default()
    };
    let (flag, reason) = s.clone().override_load(&no_runs).unwrap_err();
    assert_eq!(flag, "--repeat", "{reason}");
    let bad_rate = LoadArgs {
        rate: Some(-1.0),
        ..LoadArgs::default()
    };
    let (flag, reason) = s.clone().override_load(&bad_rate).unwrap_err();
    assert_eq!(flag, "--rate", "{reason}");
    let clients_on_open = LoadArgs {
        clients: Some(4),
        ..LoadArgs::default()
    };
    let (flag, reason) = s.clone().override_load(&clients_on_open).unwrap_err();
    assert_eq!(flag, "--clients");
    assert!(reason.contains("closed loop"), "{reason}");
    // A window past the new end is the schedule's error, named by its entry.
    let mut faults = Scenario::load("faults", &crate::run::lab::scenarios_dir()).unwrap();
    let short = LoadArgs {
        duration: Some(10),
        ..LoadArgs::default()
    };
    let (field, _) = faults.override_load(&short).unwrap_err();
    assert!(field.starts_with("faults["), "{field}");
}

#[test]
fn a_scenario_may_leave_out_every_section_with_a_default() {
    let s = Scenario::parse("name = \"mine\"\n", Path::new("mine.toml")).unwrap();
    assert_eq!(s.seed, 42);
    assert_eq!(s.protocols.len(), 3);
    assert_eq!(
        (
            s.load.mode,
            s.load.rate,
            s.load.duration_s,
            s.load.warmup_s,
            s.load.repeat
        ),
        (LoadMode::Open, Some(40.0), 10, 3, 1)
    );
    assert_eq!((s.dataset.customers, s.dataset.skus), (1_000, 100));
    // Inside a given section, a missing field takes its own default.
    let closed = Scenario::parse(
        "name = \"c\"\n[load]\nmode = \"closed\"\nclients = 8\n[dataset]\nskus = 5\n",
        Path::new("c.toml"),
    )
    .unwrap();
    assert_eq!((closed.load.clients, closed.load.duration_s), (Some(8), 10));
    assert_eq!((closed.dataset.skus, closed.dataset.customers), (5, 1_000));
    // An open loop still has to say its rate.
    let e = Scenario::parse(
        "name = \"o\"\n[load]\nduration_s = 5\n",
        Path::new("o.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("load.rate"), "{e}");
}
