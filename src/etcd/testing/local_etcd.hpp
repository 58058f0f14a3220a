// local_etcd: starts etcd members on loopback for the tests and the benchmarks (not installed).
//
// Owns: the member processes (/usr/bin/etcd, or $ITERLOCK_ETCD_BIN), their data dirs (a fresh temp dir
// under /dev/shm when it exists, else $TMPDIR) and their ports (free ports picked by the kernel).
// Invariants:
//   1. The constructor returns once every member answers a Status call and the cluster has a leader; it
//      throws std::runtime_error (with the member's log tail) otherwise.
//   2. The destructor kills every member (SIGKILL), reaps it and removes the temp dir, also while a test
//      unwinds. Each member also dies with the process that started it (PR_SET_PDEATHSIG), so a crashed
//      test leaves no etcd behind (the temp dir may stay; it is under /dev/shm/iterlock-etcd-*).
//   3. kill(i) / restart(i) stop and start member i on the same ports and data dir; stop(i) / resume(i)
//      send SIGSTOP / SIGCONT.
//   4. With a local_tls, the members serve their client URLs over TLS only (https), and the fixture's own
//      readiness checks connect with local_tls::client.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "iterlock/etcd/client.hpp"

namespace iterlock::etcd::testing {

// TLS for the members' client URLs (PEM files). With client_ca_file set, members also require a client
// certificate signed by it (--client-cert-auth).
struct local_tls {
    std::string cert_file, key_file, client_ca_file;
    tls_options client;  // what the fixture's own clients (readiness, leader()) present
};

class local_etcd {
  public:
    explicit local_etcd(int members = 1, std::optional<local_tls> tls = std::nullopt) : tls_(std::move(tls)) {
        const char* shm = "/dev/shm";
        std::string base =
            std::filesystem::is_directory(shm) ? shm : std::filesystem::temp_directory_path().string();
        std::string templ = base + "/iterlock-etcd-XXXXXX";
        if (!mkdtemp(templ.data())) throw std::runtime_error("local_etcd: mkdtemp failed");
        dir_ = templ;
        for (int attempt = 0;; ++attempt) {
            try {
                members_.assign(static_cast<std::size_t>(members), member{});
                for (int i = 0; i < members; ++i) {
                    auto& m = members_[static_cast<std::size_t>(i)];
                    m.name = "m" + std::to_string(i);
                    m.client_port = free_port();
                    m.peer_port = free_port();
                    m.data_dir = dir_ + "/" + m.name + "-" + std::to_string(attempt);
                }
                for (int i = 0; i < members; ++i) spawn(i);
                wait_ready(std::chrono::seconds(15));
                return;
            } catch (const std::exception&) {
                kill_all();
                if (attempt >= 2) {
                    std::filesystem::remove_all(dir_);
                    throw;
                }
            }
        }
    }
    ~local_etcd() {
        kill_all();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    local_etcd(const local_etcd&) = delete;
    local_etcd& operator=(const local_etcd&) = delete;

    int size() const { return static_cast<int>(members_.size()); }
    std::string endpoint(int i) const {
        return "127.0.0.1:" + std::to_string(members_.at(static_cast<std::size_t>(i)).client_port);
    }
    std::vector<std::string> endpoints() const {
        std::vector<std::string> out;
        for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
        return out;
    }

    void kill(int i) {
        auto& m = members_.at(static_cast<std::size_t>(i));
        if (m.pid <= 0) return;
        ::kill(m.pid, SIGKILL);
        ::waitpid(m.pid, nullptr, 0);
        m.pid = -1;
    }
    void restart(int i) {
        kill(i);
        spawn(i);
        wait_member(i, std::chrono::steady_clock::now() + std::chrono::seconds(15));
    }
    // Returns once the member is stopped (SIGSTOP is delivered asynchronously: /proc says when).
    void stop(int i) {
        const pid_t pid = members_.at(static_cast<std::size_t>(i)).pid;
        ::kill(pid, SIGSTOP);
        for (int tries = 0; tries < 1000; ++tries) {
            std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
            std::string stat;
            std::getline(f, stat);
            const auto close = stat.rfind(')');
            if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'T') return;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }
    void resume(int i) { ::kill(members_.at(static_cast<std::size_t>(i)).pid, SIGCONT); }

    // The index of the member that is leader now (-1 if none answers that it is).
    int leader() const {
        client_options o;
        o.endpoints = endpoints();
        o.attempt_timeout = std::chrono::milliseconds(500);
        if (tls_) o.tls = tls_->client;
        client c(o);
        for (int i = 0; i < size(); ++i) {
            if (members_[static_cast<std::size_t>(i)].pid <= 0) continue;
            try {
                auto s = c.status(endpoint(i));
                if (s.leader != 0 && s.leader == s.member_id) return i;
            } catch (const error&) {
            }
        }
        return -1;
    }

  private:
    struct member {
        std::string name, data_dir;
        int client_port = 0, peer_port = 0;
        pid_t pid = -1;
    };

    static int free_port() {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = 0;
        socklen_t len = sizeof a;
        if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
            if (fd >= 0) ::close(fd);
            throw std::runtime_error("local_etcd: no free port");
        }
        ::close(fd);
        return ntohs(a.sin_port);
    }

    std::string log_path(int i) const {
        return dir_ + "/" + members_[static_cast<std::size_t>(i)].name + ".log";
    }

    void spawn(int i) {
        const auto& m = members_.at(static_cast<std::size_t>(i));
        std::string cluster;
        for (const auto& o : members_) {
            if (!cluster.empty()) cluster += ',';
            cluster += o.name + "=http://127.0.0.1:" + std::to_string(o.peer_port);
        }
        const std::string curl =
            (tls_ ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(m.client_port);
        const std::string purl = "http://127.0.0.1:" + std::to_string(m.peer_port);
        std::vector<std::string> args = {bin(),
                                         "--name",
                                         m.name,
                                         "--data-dir",
                                         m.data_dir,
                                         "--listen-client-urls",
                                         curl,
                                         "--advertise-client-urls",
                                         curl,
                                         "--listen-peer-urls",
                                         purl,
                                         "--initial-advertise-peer-urls",
                                         purl,
                                         "--initial-cluster",
                                         cluster,
                                         "--initial-cluster-state",
                                         "new",
                                         "--initial-cluster-token",
                                         "iterlock-" + std::to_string(::getpid()),
                                         "--heartbeat-interval",
                                         "50",
                                         "--election-timeout",
                                         "500",
                                         "--logger",
                                         "zap",
                                         "--log-level",
                                         "warn"};
        if (tls_) {
            args.insert(args.end(), {"--cert-file", tls_->cert_file, "--key-file", tls_->key_file});
            if (!tls_->client_ca_file.empty()) {
                args.push_back("--client-cert-auth");
                args.push_back("--trusted-ca-file");
                args.push_back(tls_->client_ca_file);
            }
        }
        const std::string log = log_path(i);
        pid_t pid = ::fork();
        if (pid < 0) throw std::runtime_error("local_etcd: fork failed");
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                ::dup2(fd, 1);
                ::dup2(fd, 2);
            }
            std::vector<char*> argv;
            for (auto& a : args) argv.push_back(a.data());
            argv.push_back(nullptr);
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        members_[static_cast<std::size_t>(i)].pid = pid;
    }

    static std::string bin() {
        const char* b = std::getenv("ITERLOCK_ETCD_BIN");
        return b && *b ? b : "/usr/bin/etcd";
    }

    std::string log_tail(int i) const {
        std::ifstream f(log_path(i));
        std::stringstream ss;
        ss << f.rdbuf();
        std::string s = ss.str();
        return s.size() > 2000 ? s.substr(s.size() - 2000) : s;
    }

    void wait_member(int i, std::chrono::steady_clock::time_point deadline) {
        client_options o;
        o.endpoints = {endpoint(i)};
        o.attempt_timeout = std::chrono::milliseconds(300);
        if (tls_) o.tls = tls_->client;
        client c(o);
        for (;;) {
            int st = 0;
            if (::waitpid(members_[static_cast<std::size_t>(i)].pid, &st, WNOHANG) > 0) {
                members_[static_cast<std::size_t>(i)].pid = -1;
                throw std::runtime_error("local_etcd: etcd member " + std::to_string(i) + " exited:\n" +
                                         log_tail(i));
            }
            try {
                auto s = c.status(endpoint(i));
                if (s.leader != 0) return;
            } catch (const error& e) {
                if (std::getenv("ITERLOCK_ETCD_DEBUG")) std::fprintf(stderr, "local_etcd: %s\n", e.what());
            }
            if (std::chrono::steady_clock::now() > deadline)
                throw std::runtime_error("local_etcd: member " + std::to_string(i) + " not ready:\n" +
                                         log_tail(i));
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }

    void wait_ready(std::chrono::seconds timeout) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (int i = 0; i < size(); ++i) wait_member(i, deadline);
    }

    void kill_all() noexcept {
        for (int i = 0; i < size(); ++i) {
            auto& m = members_[static_cast<std::size_t>(i)];
            if (m.pid > 0) {
                ::kill(m.pid, SIGCONT);
                ::kill(m.pid, SIGKILL);
                ::waitpid(m.pid, nullptr, 0);
                m.pid = -1;
            }
        }
    }

    std::optional<local_tls> tls_;
    std::string dir_;
    std::vector<member> members_;
};

}  // namespace iterlock::etcd::testing
