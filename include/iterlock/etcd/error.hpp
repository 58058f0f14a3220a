// iterlock/etcd/error.hpp: the one exception type iterlock::etcd throws, with a code that says what the
// caller may do next.
//
// Owns: iterlock::etcd::errc, iterlock::etcd::error.
// Invariants: every failure of an etcd call reaches the caller as an etcd::error (or std::bad_alloc); its
// what() names the call, the endpoint and etcd's or gRPC's message. A write that failed after its request
// may have reached etcd is always errc::may_have_applied, never a plain unavailable: the caller must read
// back before retrying it (rule E2).
#pragma once

#include <stdexcept>
#include <string>

namespace iterlock::etcd {

// E1  unavailable, deadline, auth_failed, invalid_argument, too_large, compacted, future_revision,
//     permission_denied: the request was NOT applied (it was rejected or never sent). Reads fail with these
//     only after the client tried the endpoints it may try (client.hpp, C3).
// E2  may_have_applied: a write whose request was sent and whose answer was lost (connection dropped,
//     deadline passed, server restarted). etcd may or may not have committed it; read it back (by key and
//     mod_revision) before doing it again.
// E3  watch_canceled: etcd canceled a watch for a reason other than compaction (the message says which).
// E4  decode: a key or value under a map's prefix that its Codec could not read (map.hpp).
// E5  lease_expired: the lease an iteration guard lived on is gone (its process stalled or was cut off past
//     the TTL): the guard no longer excludes writers, and nothing it wrote after that landed
//     (iteration_lock.hpp, D-L6). Take a new guard.
enum class errc {
    unavailable,        // no endpoint answered (connection refused, no leader), request not applied
    deadline,           // the per-call deadline passed before the request was sent
    may_have_applied,   // E2
    compacted,          // the revision asked for was compacted away
    future_revision,    // the revision asked for is newer than etcd's
    too_large,          // a key or value beyond etcd's request limit, rejected before sending
    auth_failed,        // wrong user or password, or authentication needed
    permission_denied,  // the user lacks the permission
    invalid_argument,   // etcd rejected the request as malformed
    watch_canceled,     // E3
    decode,             // E4
    lease_expired,      // E5
    internal,           // anything else from gRPC or etcd (the message carries it)
};

// The code's name, e.g. "may_have_applied".
const char* to_string(errc c) noexcept;

class error : public std::runtime_error {
  public:
    error(errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
    errc code() const noexcept { return code_; }

  private:
    errc code_;
};

}  // namespace iterlock::etcd
