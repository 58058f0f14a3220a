// Faults and misuse of channels (issue 13): what a channel does when its last handle dies under a blocked
// thread (rule C9), and what an impossible capacity throws.
#include <gtest/gtest.h>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <thread>

#include "iterlock/chan.hpp"
#include "support/chan_probes.hpp"
#include "support/polling.hpp"
#include "support/watchdog.hpp"

namespace {

using access = iterlock::test::chan_access;
using iterlock::chan;
using iterlock::on_recv;
using iterlock::select;

class ChanFaultsDeathTest : public ::testing::Test {
  protected:
    void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

constexpr const char* blocked_message =
    "fatal error: iterlock::chan: the last handle to a channel was destroyed while a thread is blocked on it";

// In a death test's child: a thread blocks in `op` on a channel it reaches through a reference to the only
// handle (the misuse), the handle is destroyed once the thread is parked, and C9 must abort. Before C9 the
// destruction returned, the thread slept forever on freed memory, and the child "failed to die"; the
// watchdog covers any hang on the way.
template <class Prepare, class Op, class Parked>
void destroy_last_handle_under_blocked_thread(std::size_t capacity, Prepare prepare, Op op, Parked parked) {
    iterlock::test::watchdog const dog(std::chrono::seconds(60),
                                       "Item07: the death test's child ran for 60 s");
    auto* handle = new chan<int>(capacity);
    prepare(*handle);
    std::thread blocked([&only = *handle, op] { op(only); });
    blocked.detach();
    iterlock::test::wait_until([&] { return parked(*handle); });
    delete handle;  // the last handle: the blocked thread holds only a reference
}

TEST_F(ChanFaultsDeathTest, C9_Item07_LastHandleDestroyedUnderBlockedThreadAborts) {
    auto nothing = [](const chan<int>&) {};
    auto receivers = [](const chan<int>& c) { return access::waiting(c, false) >= 1; };
    auto senders = [](const chan<int>& c) { return access::waiting(c, true) >= 1; };
    // Unbuffered receive (parked in the hand-over slot).
    EXPECT_DEATH(destroy_last_handle_under_blocked_thread(
                     0, nothing, [](const chan<int>& c) { (void)c.recv(); }, receivers),
                 blocked_message);
    // Unbuffered timed send (the hand-over slot, sender side).
    EXPECT_DEATH(
        destroy_last_handle_under_blocked_thread(
            0, nothing, [](const chan<int>& c) { (void)c.send_for(1, std::chrono::hours(1)); }, senders),
        blocked_message);
    // Buffered receive on an empty channel (a waiter in the receive queue).
    EXPECT_DEATH(destroy_last_handle_under_blocked_thread(
                     4, nothing, [](const chan<int>& c) { (void)c.recv(); }, receivers),
                 blocked_message);
    // Buffered send on a full channel (a waiter in the send queue).
    EXPECT_DEATH(
        destroy_last_handle_under_blocked_thread(
            1, [](const chan<int>& c) { c.send(1); }, [](const chan<int>& c) { c.send(2); }, senders),
        blocked_message);
    // A select blocked over this channel and another one that stays alive.
    EXPECT_DEATH(destroy_last_handle_under_blocked_thread(
                     0, nothing,
                     [](const chan<int>& c) {
                         chan<int> other(0);
                         select(on_recv(c), on_recv(other));
                     },
                     receivers),
                 blocked_message);
}

// Destroying the last handle with nobody blocked is ordinary, buffered values included; a thread that holds
// its own copy keeps the channel alive (the usual way, and the one C9 asks for).
TEST(ChanFaults, C9_Item07_ThreadsHoldingTheirOwnHandleAreUnaffected) {
    {
        chan<int> c(4);
        c.send(1);
    }
    auto* handle = new chan<int>(0);
    std::thread t([own = *handle] { EXPECT_EQ(own.recv(), 7); });
    chan<int> sender = *handle;
    delete handle;
    sender.send(7);
    t.join();
}

TEST(ChanFaults, Item13_HugeCapacityThrowsLengthErrorNamingTheLimit) {
    std::size_t const huge = std::size_t{1} << 60;
    try {
        chan<int> c(huge);
        FAIL() << "chan<int>(1 << 60) did not throw";
    } catch (const std::length_error& e) {
        std::string const what = e.what();
        EXPECT_NE(what.find("iterlock::chan: capacity 1152921504606846976"), std::string::npos) << what;
        EXPECT_NE(what.find("max_capacity() = " + std::to_string(chan<int>::max_capacity())),
                  std::string::npos)
            << what;
    }
    // Every capacity above the limit, a negative int converted to size_t included, and for other types.
    EXPECT_THROW((void)chan<int>(chan<int>::max_capacity() + 1), std::length_error);
    EXPECT_THROW((void)chan<int>(static_cast<std::size_t>(-1)), std::length_error);
    EXPECT_THROW((void)chan<std::string>(huge), std::length_error);
    EXPECT_LT(chan<std::string>::max_capacity(), chan<int>::max_capacity());
    EXPECT_EQ(chan<int>(3).capacity(), 3u);
}

}  // namespace
