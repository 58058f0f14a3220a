// iterlock::etcd::to_string(errc): the names of the error codes (error.hpp).
#include "iterlock/etcd/error.hpp"

namespace iterlock::etcd {

const char* to_string(errc c) noexcept {
    switch (c) {
        case errc::unavailable:
            return "unavailable";
        case errc::deadline:
            return "deadline";
        case errc::may_have_applied:
            return "may_have_applied";
        case errc::compacted:
            return "compacted";
        case errc::future_revision:
            return "future_revision";
        case errc::too_large:
            return "too_large";
        case errc::auth_failed:
            return "auth_failed";
        case errc::permission_denied:
            return "permission_denied";
        case errc::invalid_argument:
            return "invalid_argument";
        case errc::watch_canceled:
            return "watch_canceled";
        case errc::decode:
            return "decode";
        case errc::lease_expired:
            return "lease_expired";
        case errc::internal:
            return "internal";
    }
    return "unknown";
}

}  // namespace iterlock::etcd
