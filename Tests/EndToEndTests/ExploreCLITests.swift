import BasinTestSupport
import Foundation
import XCTest

/// `basin explore` fails with one clear line (never a crash) before touching the terminal.
final class ExploreCLITests: XCTestCase {
    let samples = Fixtures.repositoryRoot.appendingPathComponent("SampleModels")
    func path(_ p: String) -> String { samples.appendingPathComponent(p).path }

    override func setUpWithError() throws {
        guard BasinBinary.url != nil else { throw XCTSkip("basin executable not built") }
    }

    func testClearErrors() throws {
        let seeds = [path("seeds/mlp-seed0.safetensors"), path("seeds/mlp-seed1.safetensors")]
        let cases: [([String], [String: String], String)] = [
            (["explore"] + seeds, [:], "give a data set with --data"),
            (["explore", seeds[0]], [:], "two or more models"),
            (["explore", seeds[0], path("data/digits-test.safetensors"), "--data", path("data/digits-test.safetensors")], [:], "digits-test.safetensors"),
            (["explore"] + seeds + ["--data", path("data/digits-test.safetensors"), "--theme", "nope"], [:], "theme 'nope' not found"),
            (["explore"] + seeds + ["--data", path("data/digits-test.safetensors")], [:], "needs an interactive terminal"),
            ([], ["BASIN_SAMPLES_DIR": "/nonexistent"], "BASIN_SAMPLES_DIR=/nonexistent"),
            (["explore"] + seeds + ["--data", path("data/digits-test.safetensors"), "--eval", "test="], [:], "give NAME=FILE"),
            (["explore"] + seeds + ["--data", path("data/digits-test.safetensors"), "--eval", "a=\(path("data/digits-test.safetensors"))",
                                    "--eval", "a=\(path("data/digits-val.safetensors"))"], [:], "the name 'a' is given twice"),
            (["explore"] + seeds + ["--data", path("data/digits-test.safetensors"), "--eval", "x=/nonexistent/set.safetensors"], [:], "/nonexistent/set.safetensors"),
        ]
        for (args, env, message) in cases {
            let r = try BasinBinary.run(args, environment: env)
            XCTAssertNotEqual(r.status, 0, "\(args)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Fatal error"), r.stderr)
        }
    }

    func testBenchUIReportsLatency() throws {
        let r = try BasinBinary.run(["bench", "ui", "--json", "--repeats", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
        XCTAssertNotNil(json["p50Ms"] as? Double)
        XCTAssertNotNil(json["p95Ms"] as? Double)
        XCTAssertEqual(json["frameWidth"] as? Int, 200)
    }
}
