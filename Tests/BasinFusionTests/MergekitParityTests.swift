@testable import BasinFusion
import BasinIO
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// Basin against mergekit 0.1.5's own outputs (Tests/Fixtures/transformers/mergekit, made by mergekit-yaml run from
/// Tests/Fixtures/transformers; see ../shared/README.md "fixtures/transformers").
final class MergekitParityTests: XCTestCase {
    static let folder = Fixtures.url("transformers")
    static let deterministic = ["linear", "task_arithmetic", "ties", "slerp", "breadcrumbs", "model_stock", "nuslerp", "karcher", "passthrough"]

    /// Runs `body` with the working directory at the fixtures' folder, as mergekit was run.
    func inFixtureFolder<R>(_ body: () throws -> R) rethrows -> R {
        let previous = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(Self.folder.path)
        defer { FileManager.default.changeCurrentDirectoryPath(previous) }
        return try body()
    }

    func merge(_ name: String, into out: URL, edit: (inout MergeRecipe) -> Void = { _ in }) throws -> MergeReport {
        try inFixtureFolder {
            var recipe = try MergeRecipe.load(Self.folder.appendingPathComponent("mergekit/\(name).yml"))
            edit(&recipe)
            var options = MergeRunOptions()
            options.hashInputs = false
            return try MergeExecutor.run(try MergePlan(recipe: recipe), out: out, options: options)
        }
    }

    func testDeterministicMethodsMatchMergekit() throws {
        try forEachSIMDPath { _ in try deterministicMethodsMatchMergekit() }
    }

    func deterministicMethodsMatchMergekit() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var report: [String] = []
        for name in Self.deterministic {
            let out = dir.appendingPathComponent(name)
            _ = try merge(name, into: out)
            let ours = try ModelFile.open(out), theirs = try ModelFile.open(Self.folder.appendingPathComponent("mergekit/\(name)"))
            XCTAssertEqual(ours.names.sorted(), theirs.names.sorted(), name)
            var worst = 0.0, worstTensor = ""
            for n in theirs.names {
                let a = try ours.tensor(n), b = try theirs.tensor(n)
                XCTAssertEqual(a.shape, b.shape, "\(name) \(n)")
                XCTAssertEqual(ours.info(n)?.dtype, .f32, "\(name) \(n)")
                for j in 0..<b.count where Double(abs(a[j] - b[j])) > worst {
                    worst = Double(abs(a[j] - b[j]))
                    worstTensor = n
                }
            }
            XCTAssertLessThanOrEqual(worst, 1e-6, "\(name): max |basin - mergekit| = \(worst) at \(worstTensor)")
            report.append("\(name) \(worst)")
            // config.json: the donor's, with the new layer count for passthrough, byte for byte as mergekit (through
            // save_pretrained) writes it. Comparing parsed dictionaries let 0.0 and 10000.0 come out as integers.
            let config = try String(contentsOf: out.appendingPathComponent("config.json"), encoding: .utf8)
            let expected = try String(contentsOf: Self.folder.appendingPathComponent("mergekit/\(name)/config.json"), encoding: .utf8)
            XCTAssertEqual(config, expected, name)
            XCTAssertEqual((ours as? HuggingFaceModel)?.metadata["format"], "pt")
        }
        print("mergekit parity (max abs diff): " + report.joined(separator: ", "))
    }

    /// bf16 output: computed in float32 and rounded once, every element is mergekit's float32 result rounded to bf16
    /// or one bf16 step from it (every deterministic method; karcher's float32 differences of up to 7e-7 move 3 of
    /// 77,504 elements one step).
    func testBF16OutputsRoundOnce() throws {
        try forEachSIMDPath { _ in try bf16OutputsRoundOnce() }
    }

    func bf16OutputsRoundOnce() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for name in Self.deterministic {
            let out = dir.appendingPathComponent(name)
            _ = try merge(name, into: out) { $0.outDType = .bf16 }
            let ours = try ModelFile.open(out), theirs = try ModelFile.open(Self.folder.appendingPathComponent("mergekit/\(name)"))
            var equal = 0, oneStep = 0
            for n in theirs.names {
                XCTAssertEqual(ours.info(n)?.dtype, .bf16)
                let reference = try theirs.tensor(n)
                let expected = reference.storage.map { DTypeConversion.bf16Bits($0) }
                let got: [UInt16] = try ours.withRawBytes(n) { raw in (0..<reference.count).map { raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self) } }
                for (g, e) in zip(got, expected) {
                    if g == e { equal += 1 } else if abs(Int(g) - Int(e)) == 1 { oneStep += 1 } else {
                        XCTFail("\(name) \(n): bf16 \(String(g, radix: 16)) vs mergekit rounded \(String(e, radix: 16))")
                    }
                }
            }
            print("\(name) bf16: \(equal) equal, \(oneStep) one step off")
        }
    }

    /// DARE: the kept fraction of every task vector is within sampling error of mergekit's, and a seed makes Basin
    /// reproducible.
    func testDareTiesStatisticsAndSeed() throws {
        let expected = try Fixtures.json("transformers/expected.json") as! [String: Any]
        let random = ((expected["mergekit"] as! [String: Any])["merges"] as! [String: Any])["dare_ties"] as! [String: Any]
        let kept = (random["random"] as! [String: Any])["kept_fraction_per_tensor_per_model"] as! [String: [String: Double]]
        let base = try ModelFile.open(Self.folder.appendingPathComponent("llama-tiny-base"))
        for (tensor, perModel) in kept {
            for (model, theirs) in perModel {
                let ft = try ModelFile.open(Self.folder.appendingPathComponent(model))
                var d = zip(try ft.tensor(tensor).storage, try base.tensor(tensor).storage).map { $0 - $1 }
                let nonzero = d.filter { $0 != 0 }.count
                try TensorMerge.sparsify(&d, shape: try base.tensor(tensor).shape, method: .random, density: 0.5, gamma: 0, epsilon: 0,
                                         rescale: true, seed: TensorMerge.dareSeed(0, name: tensor, model: 0), name: tensor)
                let ours = Double(d.filter { $0 != 0 }.count) / Double(nonzero)
                // Two independent Bernoulli(0.5) samples of n entries differ by sd sqrt(0.5 / n); allow 4.5 sd.
                let sd = (0.5 / Double(nonzero)).squareRoot()
                XCTAssertLessThanOrEqual(abs(ours - theirs), 4.5 * sd + 1e-9, "\(tensor) \(model): kept \(ours) vs mergekit \(theirs)")
            }
        }
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a"), b = dir.appendingPathComponent("b"), c = dir.appendingPathComponent("c")
        _ = try merge("dare_ties", into: a) { $0.seed = 7 }
        _ = try merge("dare_ties", into: b) { $0.seed = 7 }
        _ = try merge("dare_ties", into: c) { $0.seed = 8 }
        let fa = try Data(contentsOf: a.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(fa, try Data(contentsOf: b.appendingPathComponent("model.safetensors")), "same seed, same bytes")
        XCTAssertNotEqual(fa, try Data(contentsOf: c.appendingPathComponent("model.safetensors")), "another seed, other masks")
        // The changed fraction of the output per tensor is close to mergekit's.
        let changed = (random["random"] as! [String: Any])["changed_fraction_per_tensor"] as! [String: Double]
        let ours = try ModelFile.open(a)
        for (tensor, theirs) in changed {
            let o = try ours.tensor(tensor).storage, bs = try base.tensor(tensor).storage
            let frac = Double(zip(o, bs).filter { $0 != $1 }.count) / Double(o.count)
            XCTAssertEqual(frac, theirs, accuracy: 6 * (0.25 / Double(o.count)).squareRoot() + 1e-9, tensor)
        }
    }
}
