//! The planned graph as Graphviz DOT or Mermaid, stages marked cached or to-run.

use std::fmt::Write;

use super::plan::Plan;
use super::status::{NodeStatus, Status};

/// `digraph` text for `dot -Tsvg`.
pub fn dot(plan: &Plan, statuses: &[NodeStatus]) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\"];\n",
        plan.recipe.name
    );
    for node in plan.graph.node_indices() {
        let stage = &plan.graph[node];
        let (fill, state) = colours(statuses[node.index()].status);
        let _ = writeln!(
            out,
            "  n{} [label=\"{}\\n{} · {}\", fillcolor=\"{fill}\"];",
            node.index(),
            escape(&stage.label),
            stage.kind.kind(),
            state
        );
    }
    for edge in plan.graph.edge_indices() {
        if let Some((from, to)) = plan.graph.edge_endpoints(edge) {
            let _ = writeln!(
                out,
                "  n{} -> n{} [label=\"{}\"];",
                from.index(),
                to.index(),
                escape(&plan.graph[edge])
            );
        }
    }
    out.push_str("}\n");
    out
}

/// `flowchart` text for Mermaid (renders in GitHub markdown).
pub fn mermaid(plan: &Plan, statuses: &[NodeStatus]) -> String {
    let mut out = String::from("flowchart LR\n  classDef cached fill:#d4edda,stroke:#28a745\n  classDef run fill:#fff3cd,stroke:#d39e00\n");
    for node in plan.graph.node_indices() {
        let stage = &plan.graph[node];
        let status = statuses[node.index()].status;
        let (_, state) = colours(status);
        let _ = writeln!(
            out,
            "  n{}[\"{}<br/>{} · {}\"]:::{}",
            node.index(),
            stage.label.replace('"', "'"),
            stage.kind.kind(),
            state,
            state
        );
    }
    for edge in plan.graph.edge_indices() {
        if let Some((from, to)) = plan.graph.edge_endpoints(edge) {
            let _ = writeln!(
                out,
                "  n{} -->|{}| n{}",
                from.index(),
                plan.graph[edge],
                to.index()
            );
        }
    }
    out
}

/// `{"nodes": [{id, name, kind, key, status}], "edges": [{from, to, input}]}` for `dag --json`.
pub fn json(plan: &Plan, statuses: &[NodeStatus]) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = plan
        .graph
        .node_indices()
        .map(|node| {
            let stage = &plan.graph[node];
            serde_json::json!({
                "id": node.index(),
                "name": stage.label,
                "kind": stage.kind.kind(),
                "key": stage.key.hex(),
                "status": statuses[node.index()].status,
            })
        })
        .collect();
    let edges: Vec<serde_json::Value> = plan
        .graph
        .edge_indices()
        .filter_map(|edge| {
            let (from, to) = plan.graph.edge_endpoints(edge)?;
            Some(serde_json::json!({ "from": from.index(), "to": to.index(), "input": plan.graph[edge] }))
        })
        .collect();
    serde_json::json!({ "recipe": plan.recipe.name, "nodes": nodes, "edges": edges })
}

fn colours(status: Status) -> (&'static str, &'static str) {
    match status {
        Status::Cached => ("#d4edda", "cached"),
        Status::Run => ("#fff3cd", "run"),
    }
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
