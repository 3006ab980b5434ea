//! The verdict of one plugin on one node, as upstream's `framework.Status`.

/// How a plugin judged a (pod, node) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The node passes this plugin.
    Success,
    /// The node fails, but evicting pods (preemption) might make it pass.
    Unschedulable,
    /// The node fails and preemption cannot help (wrong labels, taints, name...).
    UnschedulableAndUnresolvable,
    /// The plugin could not decide (bad input); the pod is retried later.
    Error,
}

/// A plugin's verdict with the human reasons that end up in `FailedScheduling` events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The verdict.
    pub code: Code,
    /// Why, in upstream's words (`"Insufficient cpu"`); empty on success.
    pub reasons: Vec<String>,
    /// The plugin that decided (`"NodeResourcesFit"`).
    pub plugin: &'static str,
}

impl Status {
    /// The node passes `plugin`. Does not allocate.
    pub fn success(plugin: &'static str) -> Self {
        Self { code: Code::Success, reasons: Vec::new(), plugin }
    }

    /// The node fails `plugin` for `reason`; preemption may help.
    pub fn unschedulable(plugin: &'static str, reason: impl Into<String>) -> Self {
        Self::with(Code::Unschedulable, plugin, reason)
    }

    /// The node fails `plugin` for `reason`; preemption cannot help.
    pub fn unresolvable(plugin: &'static str, reason: impl Into<String>) -> Self {
        Self::with(Code::UnschedulableAndUnresolvable, plugin, reason)
    }

    /// `plugin` could not evaluate the pod.
    pub fn error(plugin: &'static str, reason: impl Into<String>) -> Self {
        Self::with(Code::Error, plugin, reason)
    }

    fn with(code: Code, plugin: &'static str, reason: impl Into<String>) -> Self {
        Self { code, reasons: vec![reason.into()], plugin }
    }

    /// Did the node pass?
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }
}
