//! Which nodes share one probe loop (`ProbeGroups`): identical targets only.

use super::tests::node;
use super::{NodeConfig, ProbeGroups, Role};

/// A host of a libpq multi-host alias, as `settings::hosts` names it.
fn host_of(alias: &str, port: u16) -> NodeConfig {
    let mut n = node(&format!("{alias}@127.0.0.1:{port}"), Role::Replica, 1.0);
    n.database = alias.into();
    n.multi_host = true;
    n.port = port;
    n
}

/// `default` and `replica` both listing the servers on ports 5433 and 5434.
fn two_aliases_two_servers() -> Vec<NodeConfig> {
    vec![
        host_of("default", 5433),
        host_of("default", 5434),
        host_of("replica", 5433),
        host_of("replica", 5434),
    ]
}

#[test]
fn identical_targets_share_one_group_whatever_their_alias() {
    let g = ProbeGroups::of(&two_aliases_two_servers());
    assert_eq!(g.members, vec![vec![0, 2], vec![1, 3]]);
    assert_eq!(g.group_of, vec![0, 1, 0, 1]);
    assert_eq!(g.with(2), &[0, 2]);
    assert_eq!(g.with(1), &[1, 3]);
    assert!(g.with(4).is_empty());
}

#[test]
fn a_static_alias_and_a_multi_host_one_on_the_same_server_are_one_target() {
    let mut nodes = vec![node("default", Role::Primary, 1.0)];
    nodes[0].port = 5433;
    nodes.push(host_of("replica", 5433));
    nodes.push(host_of("replica", 5434));
    let g = ProbeGroups::of(&nodes);
    assert_eq!(g.members, vec![vec![0, 1], vec![2]]);
}

#[test]
fn distinct_servers_are_separate() {
    let g = ProbeGroups::of(&super::tests::cluster(&[1.0, 1.0]).nodes);
    // The test cluster lists one address twice: that is one server, one target.
    assert_eq!(g.members, vec![vec![0, 1]]);
    let mut nodes = super::tests::cluster(&[1.0, 1.0, 1.0]).nodes;
    for (i, n) in nodes.iter_mut().enumerate() {
        n.port = 5433 + i as u16;
    }
    let g = ProbeGroups::of(&nodes);
    assert_eq!(g.members, vec![vec![0], vec![1], vec![2]]);
    assert_eq!(g.group_of, vec![0, 1, 2]);
}

#[test]
fn any_difference_in_how_the_prober_connects_keeps_nodes_apart() {
    type Change = fn(&mut NodeConfig);
    let changes: [(&str, Change); 7] = [
        ("port", |n| n.port = 5435),
        ("host", |n| n.host = "localhost".into()),
        ("dbname", |n| n.dbname = "app".into()),
        ("user", |n| n.user = "reader".into()),
        ("password", |n| n.password = Some("other".into())),
        ("sslmode", |n| n.sslmode = Some("require".into())),
        ("sslrootcert", |n| n.sslrootcert = Some("/ca.pem".into())),
    ];
    for (what, change) in changes {
        let mut nodes = two_aliases_two_servers();
        change(&mut nodes[2]);
        let g = ProbeGroups::of(&nodes);
        assert_eq!(g.with(0), &[0], "{what}");
        assert_eq!(g.with(2), &[2], "{what}");
        assert_eq!(g.with(1), &[1, 3], "{what}");
    }
    // No password on one node and a password on the other: two logins.
    let mut nodes = two_aliases_two_servers();
    nodes[2].password = None;
    assert_eq!(ProbeGroups::of(&nodes).members.len(), 3);
}

#[test]
fn what_the_prober_does_not_connect_with_does_not_split_a_group() {
    let mut nodes = two_aliases_two_servers();
    nodes[2].weight = 0.0;
    nodes[2].role = Role::Primary;
    nodes[2].multi_host = false;
    assert_eq!(
        ProbeGroups::of(&nodes).members,
        vec![vec![0, 2], vec![1, 3]]
    );
}
