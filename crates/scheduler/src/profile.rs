//! Profiles: which scoring strategy and weights a `schedulerName` uses, and the config file
//! that defines them, in the spirit of `KubeSchedulerConfiguration`:
//!
//! ```yaml
//! apiVersion: kubescheduler.config.k8s.io/v1
//! kind: KubeSchedulerConfiguration
//! percentageOfNodesToScore: 0          # 0 = adaptive, as upstream
//! profiles:
//! - schedulerName: default-scheduler   # spread (LeastAllocated)
//! - schedulerName: binpack
//!   plugins:
//!     score:
//!       enabled:  [{name: NodeResourcesFit, weight: 5}]
//!       disabled: [{name: NodeResourcesBalancedAllocation}]
//!   pluginConfig:
//!   - name: NodeResourcesFit
//!     args:
//!       scoringStrategy:
//!         type: MostAllocated
//!         resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}]
//! ```
//! Unknown keys and unknown plugin names are errors, so a typo never silently changes policy.
//! <https://kubernetes.io/docs/reference/scheduling/config/>

use serde::Deserialize;

pub use crate::plugins::node_resources_fit::{ResourceWeights, ScoringStrategy};
use crate::plugins::{
    balanced_allocation, inter_pod_affinity, node_affinity, node_resources_fit,
    pod_topology_spread, taint_toleration,
};

/// The scheduler name pods get when they do not ask for one.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";

/// Weight of each score plugin (0 disables it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights {
    /// NodeResourcesFit (the spread/binpack score).
    pub node_resources_fit: i64,
    /// NodeResourcesBalancedAllocation.
    pub balanced_allocation: i64,
    /// NodeAffinity (preferred terms).
    pub node_affinity: i64,
    /// TaintToleration (PreferNoSchedule).
    pub taint_toleration: i64,
    /// PodTopologySpread (ScheduleAnyway).
    pub pod_topology_spread: i64,
    /// InterPodAffinity (preferred terms).
    pub inter_pod_affinity: i64,
}

impl Default for Weights {
    /// Upstream's default weights.
    fn default() -> Self {
        Self {
            node_resources_fit: 1,
            balanced_allocation: 1,
            node_affinity: 2,
            taint_toleration: 3,
            pod_topology_spread: 2,
            inter_pod_affinity: 2,
        }
    }
}

/// One scheduling profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The `spec.schedulerName` this profile serves.
    pub scheduler_name: String,
    /// LeastAllocated (spread) or MostAllocated (binpack).
    pub strategy: ScoringStrategy,
    /// Resource weights inside the NodeResourcesFit score.
    pub resource_weights: ResourceWeights,
    /// Score plugin weights.
    pub weights: Weights,
    /// Percentage of nodes to find feasible before scoring; `None` or 0 = adaptive.
    pub percentage_of_nodes_to_score: Option<u32>,
}

impl Default for Profile {
    /// `default-scheduler`, spreading.
    fn default() -> Self {
        Self::spread(DEFAULT_SCHEDULER_NAME)
    }
}

impl Profile {
    /// A LeastAllocated profile named `name`.
    pub fn spread(name: &str) -> Self {
        Self {
            scheduler_name: name.to_string(),
            strategy: ScoringStrategy::LeastAllocated,
            resource_weights: ResourceWeights::default(),
            weights: Weights::default(),
            percentage_of_nodes_to_score: None,
        }
    }

    /// A MostAllocated profile named `name`.
    pub fn binpack(name: &str) -> Self {
        Self { strategy: ScoringStrategy::MostAllocated, ..Self::spread(name) }
    }
}

/// A scheduler configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid YAML/JSON for this schema (unknown keys included).
    #[error("scheduler config: {0}")]
    Parse(#[from] serde_yaml::Error),
    /// The document parsed but says something invalid.
    #[error("scheduler config: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    #[allow(dead_code)]
    api_version: Option<String>,
    kind: Option<String>,
    percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    profiles: Vec<RawProfile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProfile {
    scheduler_name: Option<String>,
    percentage_of_nodes_to_score: Option<u32>,
    plugins: Option<RawPlugins>,
    #[serde(default)]
    plugin_config: Vec<RawPluginConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    score: Option<RawPluginSet>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPluginSet {
    #[serde(default)]
    enabled: Vec<RawPlugin>,
    #[serde(default)]
    disabled: Vec<RawPlugin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: String,
    weight: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPluginConfig {
    name: String,
    args: RawFitArgs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFitArgs {
    scoring_strategy: Option<RawStrategy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    #[serde(rename = "type")]
    kind: ScoringStrategy,
    resources: Option<Vec<RawResource>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    name: String,
    weight: i64,
}

/// Parses a configuration (YAML or JSON) into profiles. No profiles means one default profile.
pub fn parse_config(text: &str) -> Result<Vec<Profile>, ConfigError> {
    let raw: RawConfig = serde_yaml::from_str(text)?;
    if let Some(kind) = raw.kind.as_deref() {
        if kind != "KubeSchedulerConfiguration" {
            return Err(ConfigError::Invalid(format!(
                "kind must be KubeSchedulerConfiguration, not {kind:?}"
            )));
        }
    }
    check_percentage(raw.percentage_of_nodes_to_score)?;
    let mut profiles = Vec::new();
    for raw_profile in raw.profiles {
        let mut profile = profile_from_raw(raw_profile)?;
        if profile.percentage_of_nodes_to_score.is_none() {
            profile.percentage_of_nodes_to_score = raw.percentage_of_nodes_to_score;
        }
        if profiles.iter().any(|p: &Profile| p.scheduler_name == profile.scheduler_name) {
            return Err(ConfigError::Invalid(format!(
                "duplicate schedulerName {:?}",
                profile.scheduler_name
            )));
        }
        profiles.push(profile);
    }
    if profiles.is_empty() {
        profiles.push(Profile {
            percentage_of_nodes_to_score: raw.percentage_of_nodes_to_score,
            ..Profile::default()
        });
    }
    Ok(profiles)
}

fn check_percentage(p: Option<u32>) -> Result<(), ConfigError> {
    match p {
        Some(p) if p > 100 => {
            Err(ConfigError::Invalid(format!("percentageOfNodesToScore must be 0..=100, got {p}")))
        }
        _ => Ok(()),
    }
}

fn weight_slot<'w>(weights: &'w mut Weights, plugin: &str) -> Result<&'w mut i64, ConfigError> {
    Ok(match plugin {
        node_resources_fit::NAME => &mut weights.node_resources_fit,
        balanced_allocation::NAME => &mut weights.balanced_allocation,
        node_affinity::NAME => &mut weights.node_affinity,
        taint_toleration::NAME => &mut weights.taint_toleration,
        pod_topology_spread::NAME => &mut weights.pod_topology_spread,
        inter_pod_affinity::NAME => &mut weights.inter_pod_affinity,
        other => return Err(ConfigError::Invalid(format!("unknown score plugin {other:?}"))),
    })
}

fn profile_from_raw(raw: RawProfile) -> Result<Profile, ConfigError> {
    check_percentage(raw.percentage_of_nodes_to_score)?;
    let mut profile =
        Profile::spread(raw.scheduler_name.as_deref().unwrap_or(DEFAULT_SCHEDULER_NAME));
    profile.percentage_of_nodes_to_score = raw.percentage_of_nodes_to_score;
    if let Some(score) = raw.plugins.and_then(|p| p.score) {
        for plugin in &score.disabled {
            if plugin.name == "*" {
                profile.weights = Weights {
                    node_resources_fit: 0,
                    balanced_allocation: 0,
                    node_affinity: 0,
                    taint_toleration: 0,
                    pod_topology_spread: 0,
                    inter_pod_affinity: 0,
                };
            } else {
                *weight_slot(&mut profile.weights, &plugin.name)? = 0;
            }
        }
        for plugin in &score.enabled {
            let default = *weight_slot(&mut Weights::default(), &plugin.name)?;
            let weight = plugin.weight.unwrap_or(default);
            if !(1..=100).contains(&weight) {
                return Err(ConfigError::Invalid(format!(
                    "weight of {} must be 1..=100, got {weight}",
                    plugin.name
                )));
            }
            *weight_slot(&mut profile.weights, &plugin.name)? = weight;
        }
    }
    for config in raw.plugin_config {
        if config.name != node_resources_fit::NAME {
            return Err(ConfigError::Invalid(format!(
                "pluginConfig for {:?} is not supported (only NodeResourcesFit)",
                config.name
            )));
        }
        let Some(strategy) = config.args.scoring_strategy else {
            continue;
        };
        profile.strategy = strategy.kind;
        if let Some(resources) = strategy.resources {
            profile.resource_weights = ResourceWeights { cpu: 0, memory: 0 };
            for r in resources {
                match r.name.as_str() {
                    "cpu" => profile.resource_weights.cpu = r.weight,
                    "memory" => profile.resource_weights.memory = r.weight,
                    other => {
                        return Err(ConfigError::Invalid(format!(
                            "scoringStrategy resource {other:?} is not supported (cpu, memory)"
                        )))
                    }
                }
            }
        }
    }
    Ok(profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 30
profiles:
- schedulerName: default-scheduler
- schedulerName: binpack
  percentageOfNodesToScore: 100
  plugins:
    score:
      enabled: [{name: NodeResourcesFit, weight: 5}]
      disabled: [{name: NodeResourcesBalancedAllocation}]
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources: [{name: cpu, weight: 2}, {name: memory, weight: 1}]
"#;

    #[test]
    fn parses_the_documented_example() {
        let profiles = parse_config(EXAMPLE).unwrap_or_default();
        assert_eq!(profiles.len(), 2);
        assert_eq!(
            profiles[0],
            Profile { percentage_of_nodes_to_score: Some(30), ..Profile::default() }
        );
        let binpack = &profiles[1];
        assert_eq!(binpack.scheduler_name, "binpack");
        assert_eq!(binpack.strategy, ScoringStrategy::MostAllocated);
        assert_eq!(binpack.weights.node_resources_fit, 5);
        assert_eq!(binpack.weights.balanced_allocation, 0);
        assert_eq!(binpack.weights.taint_toleration, 3);
        assert_eq!(binpack.resource_weights, ResourceWeights { cpu: 2, memory: 1 });
        assert_eq!(binpack.percentage_of_nodes_to_score, Some(100));
    }

    #[test]
    fn json_and_empty_configs_work() {
        let profiles =
            parse_config(r#"{"profiles": [{"schedulerName": "x"}]}"#).unwrap_or_default();
        assert_eq!(profiles, vec![Profile::spread("x")]);
        assert_eq!(parse_config("{}").unwrap_or_default(), vec![Profile::default()]);
    }

    #[test]
    fn mistakes_are_errors() {
        for bad in [
            "profiles: [{schedulerName: a, typo: 1}]",
            "percentageOfNodes: 5",
            "percentageOfNodesToScore: 101",
            "kind: Deployment",
            "profiles: [{plugins: {score: {enabled: [{name: Nope}]}}}]",
            "profiles: [{plugins: {score: {enabled: [{name: NodeAffinity, weight: 0}]}}}]",
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: Random}}}]}]",
            "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: MostAllocated, resources: [{name: gpu, weight: 1}]}}}]}]",
            "profiles: [{schedulerName: a}, {schedulerName: a}]",
            "profiles: [{plugins: {filter: {}}}]",
        ] {
            assert!(parse_config(bad).is_err(), "{bad} should be rejected");
        }
    }
}
