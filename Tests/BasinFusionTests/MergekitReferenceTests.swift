import BasinFusion
import BasinIO
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// The mergekit methods without a mergekit-made fixture, against scripts/mergekit_reference.py: a float32 numpy
/// transcription of mergekit's own method code (mergekit and PyTorch cannot be installed here), run on the same
/// LLaMA-style family as the mergekit fixtures. Recipes and outputs: Tests/Fixtures/transformers/reference.
final class MergekitReferenceTests: XCTestCase {
    static let folder = Fixtures.url("transformers")
    static let methods = ["breadcrumbs_ties", "sce", "nearswap", "multislerp", "ram", "ramplus_tl", "arcee_fusion"]

    func testMethodsMatchTheTranscribedReference() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let previous = FileManager.default.currentDirectoryPath
        FileManager.default.changeCurrentDirectoryPath(Self.folder.path)
        defer { FileManager.default.changeCurrentDirectoryPath(previous) }
        let base = try ModelFile.open(Self.folder.appendingPathComponent("llama-tiny-base"))
        var report: [String] = []
        for name in Self.methods {
            let recipe = try MergeRecipe.load(Self.folder.appendingPathComponent("reference/\(name).yml"))
            XCTAssertEqual(recipe.method.rawValue, name)
            let out = dir.appendingPathComponent("\(name).safetensors")
            var options = MergeRunOptions()
            options.hashInputs = false
            _ = try MergeExecutor.run(try MergePlan(recipe: recipe), out: out, options: options)
            let ours = try ModelFile.open(out)
            let reference = try SafeTensorsFile(url: Self.folder.appendingPathComponent("reference/\(name).safetensors"))
            var worst = 0.0, changed = 0, flips = 0, total = 0
            let donor = name == "arcee_fusion" ? try ModelFile.open(Self.folder.appendingPathComponent("llama-tiny-ft-add")) : nil
            for (tensor, expected) in try reference.allTensors() {
                let got = try ours.tensor(tensor), before = try base.tensor(tensor)
                let x = try donor?.tensor(tensor)
                XCTAssertEqual(got.shape, expected.shape, "\(name) \(tensor)")
                total += expected.count
                for j in 0..<expected.count {
                    if expected[j] != before[j] { changed += 1 }
                    // arcee_fusion moves an entry when its importance reaches median + 1.5 IQR of all importances; an
                    // importance within rounding of that threshold goes either way with the order of a float32 sum
                    // (torch's, numpy's and Basin's differ), so such an entry may be base's or x's.
                    let moved = x.map { before[j] + ($0[j] - before[j]) }
                    if let moved, abs(got[j] - expected[j]) > 1e-6,
                       (abs(got[j] - before[j]) <= 1e-6 && abs(expected[j] - moved) <= 1e-6) || (abs(got[j] - moved) <= 1e-6 && abs(expected[j] - before[j]) <= 1e-6) {
                        flips += 1
                        continue
                    }
                    worst = max(worst, Double(abs(got[j] - expected[j])))
                }
            }
            XCTAssertLessThanOrEqual(Double(flips), 0.001 * Double(total), "\(name): \(flips) entries on the other side of the threshold")
            // The reference must actually move the weights, or the comparison would prove little.
            XCTAssertGreaterThan(changed, 0, name)
            XCTAssertLessThanOrEqual(worst, 1e-6, "\(name): max |basin - reference| = \(worst)")
            report.append("\(name) \(worst)" + (flips > 0 ? " (\(flips) of \(total) at the threshold)" : ""))
        }
        print("mergekit reference (max abs diff): " + report.joined(separator: ", "))
    }

    /// DELLA (mergekit's della_magprune): within each row, the keep probability rises linearly with the magnitude's
    /// rank from density - epsilon to density + epsilon; what is kept is rescaled to the row-set's L1 norm; a seed
    /// reproduces the mask and another seed changes it.
    func testDellaKeepsByRankWithinSamplingError() throws {
        let rows = 64, cols = 512
        var values = [Float](repeating: 0, count: rows * cols)
        var rng = SeededGenerator(seed: 7)
        for j in values.indices { values[j] = Float(rng.nextUnit() * 2 - 1) }
        let x = Tensor(shape: [rows, cols], storage: values), base = Tensor.zeros([rows, cols])
        let density: Float = 0.5, epsilon: Float = 0.2
        let p = TensorMergeParameters(weights: [1], densities: [density], normalize: false, rescale: true, seed: 3, epsilons: [epsilon])
        for method in [MergeMethod.della, .dellaLinear] {
            let a = try TensorMerge.merge(method, name: "w", inputs: [x], base: base, parameters: p)
            XCTAssertEqual(try TensorMerge.merge(method, name: "w", inputs: [x], base: base, parameters: p), a, "\(method): same seed, same bits")
            var other = p
            other.seed = 4
            XCTAssertNotEqual(try TensorMerge.merge(method, name: "w", inputs: [x], base: base, parameters: other), a)
            // Kept fraction by rank decile: expected mean probability of the decile's ranks; binomial sd.
            let deciles = 10
            var kept = [Int](repeating: 0, count: deciles), total = [Int](repeating: 0, count: deciles), expected = [Double](repeating: 0, count: deciles)
            var l1Before = 0.0, l1After = 0.0
            for r in 0..<rows {
                let order = (0..<cols).sorted { abs(values[r * cols + $0]) < abs(values[r * cols + $1]) }
                for (rank, c) in order.enumerated() {
                    let d = rank * deciles / cols
                    total[d] += 1
                    expected[d] += Double(density - epsilon) + Double(rank) / Double(cols - 1) * 2 * Double(epsilon)
                    if a[r * cols + c] != 0 { kept[d] += 1 }
                    l1Before += Double(abs(values[r * cols + c]))
                    l1After += Double(abs(a[r * cols + c]))
                }
            }
            for d in 0..<deciles {
                let pMean = expected[d] / Double(total[d])
                let sd = (pMean * (1 - pMean) / Double(total[d])).squareRoot()
                let got = Double(kept[d]) / Double(total[d])
                XCTAssertLessThanOrEqual(abs(got - pMean), 4.5 * sd, "\(method) decile \(d): kept \(got), expected \(pMean)")
            }
            XCTAssertEqual(l1After / l1Before, 1, accuracy: 1e-4, "\(method): rescaled to the L1 norm")
            // Kept entries are the input times one common factor.
            let factor = (0..<values.count).first { a[$0] != 0 }.map { a[$0] / values[$0] }!
            for j in 0..<values.count where a[j] != 0 { XCTAssertEqual(a[j], values[j] * factor, accuracy: 1e-5 * abs(a[j])) }
        }
        // density +- epsilon must stay inside (0, 1), as mergekit requires.
        var bad = p
        bad.epsilons = [0.5]
        XCTAssertThrowsError(try TensorMerge.merge(.della, name: "w", inputs: [x], base: base, parameters: bad)) {
            XCTAssertEqual(($0 as? MergeError)?.kind, .invalidValue)
        }
    }

    /// dare_linear: kept fraction within sampling error of density for every task vector of the LLaMA family, and the
    /// same seed reproduces the file byte for byte.
    func testDareLinearKeptFractionAndSeed() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let f = Self.folder.path
        let text = """
        merge_method: dare_linear
        base_model: \(f)/llama-tiny-base
        models:
          - {model: \(f)/llama-tiny-ft-add, parameters: {weight: 1.0, density: 0.3}}
          - {model: \(f)/llama-tiny-ft-sub, parameters: {weight: 1.0, density: 0.3}}
        parameters: {rescale: false}
        seed: 11
        dtype: float32
        """
        let recipe = try MergeRecipe.parse(text, directory: dir)
        var options = MergeRunOptions()
        options.hashInputs = false
        let a = dir.appendingPathComponent("a.safetensors"), b = dir.appendingPathComponent("b.safetensors")
        _ = try MergeExecutor.run(try MergePlan(recipe: recipe), out: a, options: options)
        _ = try MergeExecutor.run(try MergePlan(recipe: recipe), out: b, options: options)
        XCTAssertEqual(try Data(contentsOf: a), try Data(contentsOf: b))
        let merged = try ModelFile.open(a), base = try ModelFile.open(Self.folder.appendingPathComponent("llama-tiny-base"))
        let add = try ModelFile.open(Self.folder.appendingPathComponent("llama-tiny-ft-add"))
        let sub = try ModelFile.open(Self.folder.appendingPathComponent("llama-tiny-ft-sub"))
        // Without rescaling each output entry is base + (kept_add ? tau_add : 0) + (kept_sub ? tau_sub : 0): recover
        // which were kept where the four combinations are distinguishable.
        var kept = [0, 0], seen = 0
        for name in base.names {
            let m = try merged.tensor(name), b0 = try base.tensor(name), ta = try add.tensor(name) - b0, ts = try sub.tensor(name) - b0
            for j in 0..<m.count where abs(ta[j]) > 1e-3 && abs(ts[j]) > 1e-3 && abs(ta[j] - ts[j]) > 1e-3 && abs(ta[j] + ts[j]) > 1e-3 {
                let d = m[j] - b0[j]
                let options: [(Int, Int, Float)] = [(0, 0, 0), (1, 0, ta[j]), (0, 1, ts[j]), (1, 1, ta[j] + ts[j])]
                let best = options.min { abs($0.2 - d) < abs($1.2 - d) }!
                kept[0] += best.0
                kept[1] += best.1
                seen += 1
            }
        }
        XCTAssertGreaterThan(seen, 10_000)
        let sd = (0.3 * 0.7 / Double(seen)).squareRoot()
        for k in kept { XCTAssertEqual(Double(k) / Double(seen), 0.3, accuracy: 4.5 * sd) }
    }
}
