//! The result table, printed as Markdown (so it can go into BENCHMARKS.md
//! as it is), with Focal/NATS ratios and the goals where one applies.

use crate::Params;
use crate::focal::FocalResult;
use crate::load::Outcome;
use crate::nats::NatsResult;

/// One line of the table.
pub(crate) struct Row {
    metric: String,
    focal: String,
    nats: String,
    ratio: String,
    goal: String,
}

impl Row {
    /// A figure with no NATS counterpart.
    pub(crate) fn one(metric: &str, value: String) -> Row {
        Row {
            metric: metric.into(), focal: value, nats: "—".into(), ratio: "—".into(), goal: String::new()
        }
    }

    /// Marks the issue goal this figure answers (`applies`: measured at the
    /// goal's scale).
    pub(crate) fn goal(mut self, applies: bool, met: bool, text: &str) -> Row {
        self.goal = match (applies, met) {
            (false, _) => format!("{text}: not measured at that scale"),
            (true, true) => format!("{text}: met"),
            (true, false) => format!("{text}: NOT met"),
        };
        self
    }
}

#[derive(Default)]
pub(crate) struct Table {
    sections: Vec<(String, Vec<Row>)>,
}

fn lat(o: &Outcome) -> String {
    format!("{:.1} / {:.1} / {:.1}", o.lat[0], o.lat[1], o.lat[2])
}

fn ratio(f: f64, n: f64) -> String {
    if n > 0.0 && f.is_finite() && n.is_finite() { format!("{:.2}", f / n) } else { "—".into() }
}

impl Table {
    pub(crate) fn extend(&mut self, section: &str, rows: Vec<Row>) {
        self.sections.push((section.into(), rows));
    }

    pub(crate) fn federated(&mut self, p: &Params, f: Option<&FocalResult>, n: Option<&NatsResult>) {
        if f.is_none() && n.is_none() {
            return;
        }
        let mut rows = Vec::new();
        let fs = f.map(|f| &f.saturation);
        let ns = n.map(|n| &n.saturation);
        let fo = f.map(|f| &f.offered);
        let no = n.map(|n| &n.offered);
        let get = |o: Option<&Outcome>, g: fn(&Outcome) -> String| o.map_or("not run".to_string(), g);
        let num = |o: Option<&Outcome>, g: fn(&Outcome) -> f64| o.map_or(f64::NAN, g);
        let sat_rate = |o: &Outcome| o.rate();
        rows.push(Row {
            metric: format!(
                "saturation: msgs/s reaching recipients ({} senders x {} in flight, {} msgs)",
                p.senders, p.window, p.saturation_msgs
            ),
            focal: get(fs, |o| format!("{:.0} ({} of {} arrived)", o.rate(), o.received, o.sent)),
            nats: get(ns, |o| format!("{:.0} ({} of {} arrived)", o.rate(), o.received, o.sent)),
            ratio: ratio(num(fs, sat_rate), num(ns, sat_rate)),
            goal: match (fs, n) {
                (Some(a), Some(n)) if n.flavor.sync_always => {
                    let met = a.rate() >= n.saturation.rate();
                    format!("Focal >= NATS (durable): {}", if met { "met" } else { "NOT met" })
                }
                (Some(_), Some(_)) => "none: this NATS does not fsync each write".into(),
                _ => String::new(),
            },
        });
        rows.push(Row {
            metric: "saturation: latency p50 / p99 / p99.9 (ms)".into(),
            focal: get(fs, lat),
            nats: get(ns, lat),
            ratio: ratio(num(fs, |o| o.lat[1]), num(ns, |o| o.lat[1])) + " (p99)",
            goal: String::new(),
        });
        rows.push(Row {
            metric: format!("offered {} msg/s for {} s: latency p50 / p99 / p99.9 (ms)", p.rate, p.rate_secs),
            focal: get(fo, |o| format!("{} ({} of {} arrived)", lat(o), o.received, o.sent + o.errors)),
            nats: get(no, |o| format!("{} ({} of {} arrived)", lat(o), o.received, o.sent + o.errors)),
            ratio: ratio(num(fo, |o| o.lat[1]), num(no, |o| o.lat[1])) + " (p99)",
            goal: fo.map_or(String::new(), |o| {
                Row::one("", String::new())
                    .goal(p.rate >= 1000, o.lat[1] <= 10.0, "p99 <= 10 ms at 1,000 msg/s")
                    .goal
            }),
        });
        if !p.sweep.is_empty() {
            let steps = |sweep: &[(u32, Outcome)], main: &Outcome| {
                let mut v: Vec<(u32, Outcome)> = sweep.to_vec();
                v.push((p.rate, main.clone()));
                v.sort_by_key(|(r, _)| *r);
                v
            };
            let fsteps = f.map(|f| steps(&f.sweep, &f.offered));
            let nsteps = n.map(|n| steps(&n.sweep, &n.offered));
            let show = |s: &Option<Vec<(u32, Outcome)>>, one: fn(&Outcome) -> String| {
                s.as_ref().map_or("not run".into(), |s| {
                    s.iter().map(|(_, o)| one(o)).collect::<Vec<_>>().join(" / ")
                })
            };
            let mut all_rates: Vec<u32> = p.sweep.iter().copied().chain([p.rate]).collect();
            all_rates.sort_unstable();
            let all_rates = all_rates.iter().map(u32::to_string).collect::<Vec<_>>().join(" / ");
            rows.push(Row {
                metric: format!(
                    "p99 latency (ms) at offered {all_rates} msg/s ({} s each after the {} s phase)",
                    p.sweep_secs, p.rate_secs
                ),
                focal: show(&fsteps, |o| format!("{:.1}", p99_if_all(o))),
                nats: show(&nsteps, |o| format!("{:.1}", p99_if_all(o))),
                ratio: String::new(),
                goal: String::new(),
            });
            rows.push(Row {
                metric: format!("p50 latency (ms) and machine CPU busy at offered {all_rates} msg/s"),
                focal: show(&fsteps, |o| format!("{:.1} ({})", o.lat[0], busy(o))),
                nats: show(&nsteps, |o| format!("{:.1} ({})", o.lat[0], busy(o))),
                ratio: String::new(),
                goal: String::new(),
            });
            let best = |s: &Option<Vec<(u32, Outcome)>>| {
                s.as_ref().map(|s| {
                    s.iter().filter(|(_, o)| p99_if_all(o) <= 10.0).map(|(r, _)| *r).max().unwrap_or(0)
                })
            };
            let (fb, nb) = (best(&fsteps), best(&nsteps));
            let say = |b: Option<u32>| {
                b.map_or(
                    "not run".into(),
                    |b| if b == 0 { "none of those".into() } else { format!("{b} msg/s") },
                )
            };
            rows.push(Row {
                metric: "highest of those offered loads with p99 <= 10 ms (every message arrived)".into(),
                focal: say(fb),
                nats: say(nb),
                ratio: ratio(fb.map_or(f64::NAN, f64::from), nb.map_or(f64::NAN, f64::from)),
                goal: String::new(),
            });
        }
        let busy_num = |o: Option<&Outcome>| o.and_then(|o| o.machine_busy).unwrap_or(f64::NAN);
        rows.push(Row {
            metric: format!(
                "machine CPU busy (both cores, every process) at saturation / at {} msg/s offered",
                p.rate
            ),
            focal: f.map_or("not run".into(), |f| format!("{} / {}", busy(&f.saturation), busy(&f.offered))),
            nats: n.map_or("not run".into(), |n| format!("{} / {}", busy(&n.saturation), busy(&n.offered))),
            ratio: ratio(busy_num(fo), busy_num(no)) + " (offered)",
            goal: String::new(),
        });
        if let Some(f) = f {
            rows.push(Row::one("sealed payload size of a 1 KiB body (bytes)", f.payload_bytes.to_string()));
        }
        if let Some(n) = n {
            rows.push(Row::one(
                "NATS server (durability caveat)",
                format!("{}: {}", n.version, n.flavor.durability()),
            ));
        }
        let against = n.map_or(String::new(), |n| {
            let sync = if n.flavor.sync_always { "fsync per write" } else { "no fsync per write" };
            format!(", against {} ({sync})", n.version.trim_start_matches("nats-server: "))
        });
        self.sections
            .push((format!("federated path CARIN -> GFP -> ARINSA (durable at every hop){against}"), rows));
        // Per-process CPU and memory, side by side.
        let mut rows = Vec::new();
        let names = [("carin", "carin"), ("gfp", "gfp (hub)"), ("arinsa", "arinsa")];
        for (key, label) in names {
            let fr = f.and_then(|f| f.relays.iter().find(|r| r.name == key));
            let nr = n.and_then(|n| n.servers.iter().find(|r| r.name == key));
            let per =
                |cpu: f64, o: Option<&Outcome>| o.map_or(f64::NAN, |o| cpu * 1e3 / o.received.max(1) as f64);
            let fcpu = fr.map_or(f64::NAN, |r| per(r.saturation_cpu_ms, fs));
            let ncpu = nr.map_or(f64::NAN, |r| per(r.saturation_cpu_ms, ns));
            let show = |cpu: f64, rss: Option<u64>| {
                format!(
                    "{cpu:.0} µs CPU/msg; peak RSS {} MiB",
                    rss.map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
                )
            };
            rows.push(Row {
                metric: format!("{label}: CPU time per message at saturation (utime+stime), peak RSS"),
                focal: fr.map_or("not run".into(), |r| show(fcpu, r.peak_rss_kib)),
                nats: nr.map_or("not run".into(), |r| show(ncpu, r.peak_rss_kib)),
                ratio: ratio(fcpu, ncpu) + " (CPU)",
                goal: String::new(),
            });
            let fcpu = fr.map_or(f64::NAN, |r| per(r.offered_cpu_ms, fo));
            let ncpu = nr.map_or(f64::NAN, |r| per(r.offered_cpu_ms, no));
            let show = |cpu: f64| format!("{cpu:.0} µs CPU/msg");
            rows.push(Row {
                metric: format!("{label}: CPU time per message at {} msg/s offered", p.rate),
                focal: fr.map_or("not run".into(), |_| show(fcpu)),
                nats: nr.map_or("not run".into(), |_| show(ncpu)),
                ratio: ratio(fcpu, ncpu) + " (CPU)",
                goal: String::new(),
            });
        }
        self.sections.push((format!("per process{against}"), rows));
    }

    pub(crate) fn print(&self) {
        println!();
        for (section, rows) in &self.sections {
            println!("### {section}\n");
            println!("| metric | Focal | NATS JetStream | Focal/NATS | goal |");
            println!("| --- | --- | --- | --- | --- |");
            for r in rows {
                println!("| {} | {} | {} | {} | {} |", r.metric, r.focal, r.nats, r.ratio, r.goal);
            }
            println!();
        }
    }
}

/// How busy the machine was in a phase, as a percentage.
fn busy(o: &Outcome) -> String {
    o.machine_busy.map_or("?".into(), |b| format!("{:.0} %", b * 100.0))
}

/// p99 of a phase in which every message arrived, else infinity (a phase
/// that lost messages does not count as meeting a latency bound).
fn p99_if_all(o: &Outcome) -> f64 {
    if o.received == o.sent + o.errors && o.errors == 0 { o.lat[1] } else { f64::INFINITY }
}
