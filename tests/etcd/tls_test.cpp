// TLS (client.hpp C5) against a real etcd serving its client URL over TLS on loopback, with certificates the
// test generates with the openssl command-line tool (skipped where it is not installed): a CA, a server
// certificate for 127.0.0.1, and a client certificate that etcd requires (--client-cert-auth).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "support/etcd_sequences.hpp"
#include "testing/local_etcd.hpp"

using namespace iterlock::test;
using etcd::testing::local_etcd;
using etcd::testing::local_tls;

namespace {

std::string read(const std::filesystem::path& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// A CA and two certificates it signs (EC P-256 keys: quick to generate), in a fresh directory.
struct test_pki {
    std::filesystem::path dir;
    bool ok = false;
    test_pki() {
        dir =
            std::filesystem::path(::testing::TempDir()) / ("iterlock-etcd-tls-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir);
        const std::string d = dir.string();
        const std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        const std::string cmd =
            "cd '" + d +
            "' && exec >openssl.log 2>&1 && printf 'subjectAltName=IP:127.0.0.1\\n' > san.cnf && " +
            "openssl req -x509" + key + " -keyout ca.key -out ca.crt -days 1 -subj /CN=iterlock-test-ca && " +
            "openssl req" + key + " -keyout server.key -out server.csr -subj /CN=127.0.0.1 && " +
            "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days "
            "1 "
            "-extfile san.cnf && " +
            "openssl req" + key + " -keyout client.key -out client.csr -subj /CN=iterlock-test-client && " +
            "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days "
            "1";
        ok = std::system(cmd.c_str()) == 0;
    }
    ~test_pki() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    etcd::tls_options client(bool with_cert) const {
        etcd::tls_options t;
        t.ca_pem = read(dir / "ca.crt");
        if (with_cert) {
            t.cert_pem = read(dir / "client.crt");
            t.key_pem = read(dir / "client.key");
        }
        return t;
    }
    local_tls server() const {
        return {(dir / "server.crt").string(), (dir / "server.key").string(), (dir / "ca.crt").string(),
                client(true)};
    }
};

bool have_openssl() {
    return std::system("openssl version >/dev/null 2>&1") == 0;
}

// Every test: a fresh PKI (skipped without the openssl tool), one etcd member serving TLS with it, and
// client options `o` that point at the member (no TLS set yet).
class EtcdTls : public ::testing::Test {
  protected:
    void SetUp() override {
        if (!have_openssl()) GTEST_SKIP() << "no openssl command-line tool (Debian package `openssl`)";
        pki_.emplace();
        ASSERT_TRUE(pki_->ok) << read(pki_->dir / "openssl.log");
        cluster_.emplace(1, pki_->server());
        o.endpoints = cluster_->endpoints();
    }
    const test_pki& pki() const { return *pki_; }

    etcd::client_options o;

  private:
    std::optional<test_pki> pki_;
    std::optional<local_etcd> cluster_;
};

TEST_F(EtcdTls, C5_MapOverTlsWithAClientCertificate) {
    o.tls = pki().client(true);
    etcd::client c(o);
    seq_map m(c, "tls/");  // list, watch and writes, all over TLS
    const auto last = write_sequence(c, "tls/", 0, 0, 20);
    ASSERT_TRUE(m.wait_applied(last));
    auto s = m.snapshot();
    EXPECT_EQ(expect_exact_prefixes(s.view, "over TLS")[0], 20u);
    expect_equals_etcd(m, s);
}

TEST_F(EtcdTls, C5_PlaintextOrCertificatelessClientsAreRefused) {
    o.call_timeout = std::chrono::milliseconds(1500);
    o.connect_timeout = std::chrono::milliseconds(500);
    {
        etcd::client plain(o);  // no TLS: the handshake never completes
        EXPECT_THROW(plain.put("tls/x", "1"), etcd::error);
    }
    {
        o.tls = pki().client(false);  // TLS, but no client certificate: etcd requires one
        etcd::client anonymous(o);
        EXPECT_THROW(anonymous.put("tls/x", "1"), etcd::error);
    }
    {
        etcd::tls_options wrong_ca;  // TLS with gRPC's default roots: the server's certificate is not trusted
        o.tls = wrong_ca;
        etcd::client untrusting(o);
        EXPECT_THROW((void)untrusting.get("tls/x"), etcd::error);
    }
    o.tls = pki().client(true);
    etcd::client good(o);
    EXPECT_GT(good.put("tls/x", "1"), 0);
}

}  // namespace
