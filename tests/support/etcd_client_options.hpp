// tests/support/etcd_client_options.hpp: client options that reach a local etcd cluster, for the etcd tests
// that need nothing else from them (no timeouts of their own, no TLS).
//
// Owns: iterlock::test::cluster_client_options.
// Invariant: the options list every member of the cluster, in the cluster's order, and keep the client's
// defaults for everything else.
#pragma once

#include "iterlock/etcd/client.hpp"
#include "testing/local_etcd.hpp"

namespace iterlock::test {

// Options for a client of every member of `cluster`, all else at the defaults.
inline etcd::client_options cluster_client_options(const etcd::testing::local_etcd& cluster) {
    etcd::client_options o;
    o.endpoints = cluster.endpoints();
    return o;
}

}  // namespace iterlock::test
