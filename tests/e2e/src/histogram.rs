//! Reading Prometheus text expositions the way `make bench-admission` needs: a histogram's
//! cumulative buckets summed over the series a filter picks, the difference of two readings,
//! quantiles interpolated inside a bucket (as `histogram_quantile` does), and counters summed
//! over their labels.

use std::collections::BTreeMap;

/// Cumulative buckets, ascending by upper bound: (upper bound, count); the last is +Inf.
pub type Buckets = Vec<(f64, f64)>;

/// The buckets of histogram `metric` (its name without `_bucket`) summed over every series
/// whose labels `keep` accepts (`keep` gets the label text between the braces).
pub fn buckets(exposition: &str, metric: &str, keep: impl Fn(&str) -> bool) -> Buckets {
    let prefix = format!("{metric}_bucket{{");
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for line in exposition.lines() {
        let Some(series) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((labels, value)) = series.rsplit_once("} ") else {
            continue;
        };
        let (Some(le), Ok(count)) = (label(labels, "le"), value.trim().parse::<f64>()) else {
            continue;
        };
        if keep(labels) {
            *sums.entry(le.to_string()).or_default() += count;
        }
    }
    let mut sorted: Buckets = sums
        .into_iter()
        .filter_map(|(le, count)| {
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, count))
        })
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    sorted
}

/// The value of label `name` in a series' label text (`a="x",b="y"`).
pub fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels
        .split(',')
        .find_map(|l| l.strip_prefix(name)?.strip_prefix("=\"")?.strip_suffix('"'))
}

/// What was observed between two readings of the same histogram.
pub fn subtract(after: &[(f64, f64)], before: &[(f64, f64)]) -> Buckets {
    after
        .iter()
        .map(|(le, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| b == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, count - earlier)
        })
        .collect()
}

/// The `q` quantile, interpolated linearly inside its bucket (the first bucket from 0), as
/// Prometheus' `histogram_quantile`. `None` without observations; the lower bound of the +Inf
/// bucket when the quantile falls in it (all that is known is that it is above).
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let width = count - lower.1;
            let into = if width > 0.0 {
                (rank - lower.1) / width
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * into);
        }
        lower = (le, count);
    }
    None
}

/// The share of observations at or under `bound`, which must be one of the buckets' bounds:
/// exact, unlike a quantile.
pub fn share_under(buckets: &[(f64, f64)], bound: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    let under = buckets.iter().find(|(le, _)| *le == bound)?.1;
    (total > 0.0).then(|| under / total)
}

/// The sum of every series of counter `name`, whatever its labels.
pub fn sum_series(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRIC: &str = "apiserver_admission_webhook_admission_duration_seconds";
    const EXPOSITION: &str = r#"# TYPE apiserver_admission_webhook_admission_duration_seconds histogram
apiserver_admission_webhook_admission_duration_seconds_bucket{name="fail-closed.zastava.stellaops.io",operation="CREATE",rejected="false",type="validating",le="0.005"} 90
apiserver_admission_webhook_admission_duration_seconds_bucket{name="fail-closed.zastava.stellaops.io",operation="CREATE",rejected="false",type="validating",le="0.025"} 99
apiserver_admission_webhook_admission_duration_seconds_bucket{name="fail-closed.zastava.stellaops.io",operation="CREATE",rejected="false",type="validating",le="+Inf"} 100
apiserver_admission_webhook_admission_duration_seconds_bucket{name="other.example.com",operation="CREATE",rejected="false",type="validating",le="0.005"} 1000
apiserver_admission_webhook_admission_duration_seconds_bucket{name="other.example.com",operation="CREATE",rejected="false",type="validating",le="+Inf"} 1000
apiserver_admission_webhook_admission_duration_seconds_bucket{name="fail-open.zastava.stellaops.io",operation="CREATE",rejected="true",type="validating",le="0.005"} 0
apiserver_admission_webhook_admission_duration_seconds_bucket{name="fail-open.zastava.stellaops.io",operation="CREATE",rejected="true",type="validating",le="0.025"} 1
apiserver_admission_webhook_admission_duration_seconds_bucket{name="fail-open.zastava.stellaops.io",operation="CREATE",rejected="true",type="validating",le="+Inf"} 100
apiserver_admission_webhook_admission_duration_seconds_sum{name="fail-closed.zastava.stellaops.io",operation="CREATE",rejected="false",type="validating"} 0.5
"#;

    #[test]
    fn buckets_summed_over_the_kept_series_only() {
        let zastava = buckets(EXPOSITION, METRIC, |labels| {
            label(labels, "name").is_some_and(|n| n.ends_with(".zastava.stellaops.io"))
        });
        assert_eq!(
            zastava,
            vec![(0.005, 90.0), (0.025, 100.0), (f64::INFINITY, 200.0)]
        );
        let all = buckets(EXPOSITION, METRIC, |_| true);
        assert_eq!(all[0], (0.005, 1090.0));
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_as_prometheus_does() {
        let buckets = [(0.005, 90.0), (0.025, 99.0), (f64::INFINITY, 100.0)];
        // Rank 50 of the 90 in [0, 5 ms].
        let p50 = quantile(&buckets, 0.5).unwrap();
        assert!((p50 - 0.005 * 50.0 / 90.0).abs() < 1e-12, "{p50}");
        // Rank 95: 5 of the 9 in (5, 25] ms.
        let p95 = quantile(&buckets, 0.95).unwrap();
        assert!((p95 - (0.005 + 0.020 * 5.0 / 9.0)).abs() < 1e-12, "{p95}");
        // Rank 99.5 is in +Inf: only its lower bound is known.
        assert_eq!(quantile(&buckets, 0.995), Some(0.025));
        assert_eq!(share_under(&buckets, 0.005), Some(0.9));
        assert_eq!(quantile(&[(0.005, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }

    #[test]
    fn a_run_counts_what_happened_between_the_two_readings() {
        let before = [(0.005, 10.0), (f64::INFINITY, 12.0)];
        let after = [(0.005, 30.0), (f64::INFINITY, 40.0)];
        assert_eq!(
            subtract(&after, &before),
            vec![(0.005, 20.0), (f64::INFINITY, 28.0)]
        );
    }

    #[test]
    fn counters_summed_over_labels_but_not_over_longer_names() {
        let text = "zastava_admission_decisions_total{decision=\"Allow\"} 5\n\
                    zastava_admission_decisions_total{decision=\"Deny\"} 2\n\
                    zastava_admission_decisions_total_other 100\n";
        assert_eq!(sum_series(text, "zastava_admission_decisions_total"), 7.0);
    }
}
