import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// Paths, soups and merges on the Hugging Face GPT-2 pair and LLaMA family, against the numbers PyTorch
/// computed (Tests/Fixtures/transformers/expected.json).
final class TransformerFusionTests: XCTestCase {
    func expected() throws -> [String: Any] { try Fixtures.json("transformers/expected.json") as! [String: Any] }
    func model(_ name: String) throws -> LoadedModel { try LoadedModel(path: Fixtures.url("transformers/\(name)").path) }
    func data(_ name: String) throws -> Dataset { try Dataset(url: Fixtures.url("data/\(name).safetensors")) }

    func testGPT2LinearPathAndBarrier() throws {
        let e = try expected()
        let gpt2 = e["gpt2"] as! [String: Any]
        let rows = gpt2["linear_test"] as! [[Double]]
        let a = try model("gpt2-tiny-seed0"), b = try model("gpt2-tiny-seed1")
        let test = try data("modarith-test")
        let path = try ModelPath.linear(a.params, b.params)
        // The fast evaluator (the embedding combined from per-endpoint outputs) at all 21 points; the naive
        // one (phi(t) built, the whole network run) at three.
        let fast = PathEvaluator(path: path, network: a.network, datasets: [test])
        XCTAssertTrue(fast.usesFirstLayerShortcut)
        let metrics = try XCTUnwrap(fast.metrics(ts: rows.map { $0[0] }))
        for (row, p) in zip(rows, metrics[0].points) {
            XCTAssertEqual(p.loss, row[1], accuracy: 1e-4, "t = \(row[0])")
            XCTAssertEqual(p.accuracy, row[2], accuracy: 1e-6, "t = \(row[0])")
        }
        XCTAssertEqual(metrics[0].barrier.loss, gpt2["linear_test_barrier"] as! Double, accuracy: 1e-4)
        let naive = PathEvaluator(path: path, network: a.network, datasets: [test], fast: false)
        for row in [rows[0], rows[8], rows[20]] {
            let m = naive.evaluate(at: row[0])[0]
            XCTAssertEqual(m.loss, row[1], accuracy: 1e-4, "t = \(row[0])")
            XCTAssertEqual(m.accuracy, row[2], accuracy: 1e-6, "t = \(row[0])")
        }
    }

    static let sets = ["test": "modarith-test", "add": "modarith-add-test", "sub": "modarith-sub-test", "mul": "modarith-mul-test"]

    /// Checks a parameter set's metrics on the four test files against [loss, accuracy] pairs.
    func assertMetrics(_ network: Network, _ params: ParameterSet, _ want: [String: [Double]], _ label: String,
                       lossTolerance: Double = 1e-4, file: StaticString = #filePath, line: UInt = #line) throws {
        for (key, name) in Self.sets {
            let m = network.evaluate(params, on: try data(name))
            XCTAssertEqual(m.loss, want[key]![0], accuracy: lossTolerance, "\(label) on \(key)", file: file, line: line)
            XCTAssertEqual(m.accuracy, want[key]![1], accuracy: 1e-6, "\(label) on \(key)", file: file, line: line)
        }
    }

    func llamaFamily() throws -> (base: LoadedModel, fineTunes: [LoadedModel]) {
        (try model("llama-tiny-base"), try ["add", "sub", "mul"].map { try model("llama-tiny-ft-\($0)") })
    }

    func testLlamaUniformSoupAndTaskArithmeticPerOperation() throws {
        let llama = try expected()["llama"] as! [String: Any]
        let (base, fts) = try llamaFamily()
        let soup = try ParameterMerge.uniformSoup(fts.map(\.params))
        try assertMetrics(base.network, soup, (llama["uniform_soup"] as! [String: Any])["metrics"] as! [String: [Double]], "uniform soup")
        for lambda in ["0.5", "1.0"] {
            let merged = try ParameterMerge.taskArithmetic(base: base.params, models: fts.map(\.params),
                                                           lambdas: Array(repeating: Float(lambda)!, count: 3))
            let want = ((llama["task_arithmetic"] as! [String: Any])[lambda] as! [String: Any])["metrics"] as! [String: [Double]]
            try assertMetrics(base.network, merged, want, "task arithmetic \(lambda)")
        }
        // DARE keeping everything is task arithmetic; SLERP at t = 0 is its start.
        let dareAll = try ParameterMerge.dare(base: base.params, models: fts.map(\.params), lambdas: [0.5, 0.5, 0.5], density: 1)
        let want = ((llama["task_arithmetic"] as! [String: Any])["0.5"] as! [String: Any])["metrics"] as! [String: [Double]]
        try assertMetrics(base.network, dareAll, want, "DARE density 1")
    }

    /// Every merge mergekit made of the LLaMA family, evaluated by Basin (passthrough has three layers, as its
    /// config.json says), and Basin's own TIES of the same models (MergekitParityTests checks every method tensor by tensor).
    func testMergekitMergesEvaluateAsPyTorchMeasuredThem() throws {
        let merges = (try expected()["mergekit"] as! [String: Any])["merges"] as! [String: Any]
        for (name, entry) in merges.sorted(by: { $0.key < $1.key }) {
            let want = (entry as! [String: Any])["metrics"] as! [String: [Double]]
            let m = try model("mergekit/\(name)")
            try assertMetrics(m.network, m.params, want, "mergekit \(name)")
        }
        let (base, fts) = try llamaFamily()
        let ties = try ParameterMerge.ties(base: base.params, models: fts.map(\.params), density: 0.5)
        try assertMetrics(base.network, ties, (merges["ties"] as! [String: Any])["metrics"] as! [String: [Double]], "Basin TIES")
    }

    func testGreedyAndLearnedSoupsAndEnsembleOnTokenData() throws {
        let (base, fts) = try llamaFamily()
        let heldOut = try data("modarith-test")
        let ingredients = fts.map(\.params)
        let single = fts.map { base.network.evaluate($0.params, on: heldOut) }
        let greedy = try Soup.greedy(network: base.network, ingredients: ingredients, heldOut: heldOut)
        XCTAssertGreaterThanOrEqual(greedy.metrics.accuracy, single.map(\.accuracy).max()!)
        let learned = try Soup.learned(network: base.network, ingredients: ingredients, heldOut: heldOut, steps: 20)
        let uniform = base.network.evaluate(try ParameterMerge.uniformSoup(ingredients), on: heldOut)
        XCTAssertLessThanOrEqual(learned.metrics.loss, uniform.loss + 1e-6)
        XCTAssertEqual(learned.coefficients[0].reduce(0, +), 1, accuracy: 1e-5)
        // An ensemble of one is the model (softmax over the vocabulary at every position).
        let one = Soup.ensembleMetrics(network: base.network, models: [ingredients[0]], on: heldOut)
        XCTAssertEqual(one.loss, single[0].loss, accuracy: 1e-4)
        XCTAssertEqual(one.accuracy, single[0].accuracy, accuracy: 1e-9)
        let three = Soup.ensembleMetrics(network: base.network, models: ingredients, on: heldOut)
        XCTAssertTrue(three.loss.isFinite && three.accuracy > 0.2, "\(three)")
    }

    /// Fisher merging and RegMean of a model with itself give the model back (GPT-2: Conv1D layers and a tied
    /// head; LLaMA: linear layers, an untied head), and of the fine-tunes give a working model.
    func testFisherAndRegMeanOnBothFamilies() throws {
        let train = try data("modarith-train")
        for name in ["gpt2-tiny-seed0", "llama-tiny-ft-add"] {
            let m = try model(name)
            let regmean = try DataAwareMerge.regMean(network: m.network, models: [m.params, m.params], data: train, samples: 128)
            let fisher = try DataAwareMerge.fisherMerge(network: m.network, models: [m.params, m.params], data: train, samples: 16)
            for n in m.params.names {
                XCTAssertLessThan(regmean[n]!.maxAbsDifference(m.params[n]!), 2e-3, "\(name) regmean \(n)")
                XCTAssertLessThan(fisher[n]!.maxAbsDifference(m.params[n]!), 1e-6, "\(name) fisher \(n)")
            }
        }
        let (base, fts) = try llamaFamily()
        let test = try data("modarith-test")
        let regmean = try DataAwareMerge.regMean(network: base.network, models: fts.map(\.params), data: train, samples: 256)
        let fisher = try DataAwareMerge.fisherMerge(network: base.network, models: fts.map(\.params), data: train, samples: 32)
        for (label, p) in [("regmean", regmean), ("fisher", fisher)] {
            let r = base.network.evaluate(p, on: test)
            XCTAssertTrue(r.loss.isFinite && r.accuracy > 0.1, "\(label): \(r)")
        }
    }

    /// A short Bezier fit between the GPT-2 seeds lowers the loss at the middle of the path.
    func testBezierFitOnTheGPT2Pair() throws {
        let a = try model("gpt2-tiny-seed0"), b = try model("gpt2-tiny-seed1")
        let train = try data("modarith-train")
        let config = CurveFitConfig(type: .bezier, bends: 1, epochs: 5, learningRate: 1e-2, batchSize: 64, seed: 0)
        let fitter = try CurveFitter(network: a.network, start: a.params, end: b.params, data: train, config: config)
        let before = a.network.evaluate(fitter.path.parameters(at: 0.5), on: train)
        let result = fitter.fit()
        let after = a.network.evaluate(result.path.parameters(at: 0.5), on: train)
        XCTAssertLessThan(after.loss, before.loss * 0.85, "midpoint loss \(before.loss) -> \(after.loss)")
    }

    /// An in-memory merge of Hugging Face models written to a folder is a Hugging Face folder: the first model's
    /// config.json byte for byte, weights with `format: pt`, one file or shards with an index; it opens again as a
    /// transformer and scores as the soup did.
    func testSoupExportIsAHuggingFaceFolder() throws {
        let (base, fts) = try llamaFamily()
        let soup = try ParameterMerge.uniformSoup(fts.map(\.params))
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let want = (try expected()["llama"] as! [String: Any])["uniform_soup"] as! [String: Any]
        for (label, shardSize) in [("single", CheckpointWriter.defaultShardSize), ("sharded", 40_000)] {
            let out = dir.appendingPathComponent(label)
            try MergeExport.write(soup, to: out, dtype: { _ in .f32 }, recipe: nil,
                                  inputs: fts.map { ($0.path, $0.source) }, shardSize: shardSize)
            let files = Set(try FileManager.default.contentsOfDirectory(atPath: out.path))
            XCTAssertTrue(files.contains("config.json"), "\(files)")
            if label == "single" {
                XCTAssertEqual(files, ["config.json", "model.safetensors"])
            } else {
                XCTAssertTrue(files.contains("model.safetensors.index.json") && files.count > 3, "\(files)")
            }
            XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("config.json")),
                           try Data(contentsOf: fts[0].url.deletingLastPathComponent().appendingPathComponent("config.json")))
            let again = try LoadedModel(path: out.path)
            XCTAssertTrue(again.source is HuggingFaceModel)
            XCTAssertEqual(again.source.metadata["format"], "pt")
            XCTAssertEqual(again.params.names.sorted(), base.params.names.sorted())
            try assertMetrics(again.network, again.params, want["metrics"] as! [String: [Double]], "exported soup (\(label))")
        }
    }

    /// SampleModels/transformers (made by SampleModels/generate.sh with `basin train`): each LLaMA fine-tune beats
    /// the base on its own operation, and the two GPT-2 seeds fit their training data.
    func testSampleTransformerFamily() throws {
        let root = Fixtures.repositoryRoot.appendingPathComponent("SampleModels")
        func load(_ n: String) throws -> LoadedModel { try LoadedModel(path: root.appendingPathComponent("transformers/\(n)").path) }
        func set(_ n: String) throws -> Dataset { try Dataset(url: root.appendingPathComponent("data/modarith-\(n).safetensors")) }
        let base = try load("llama-base")
        XCTAssertTrue(base.source is HuggingFaceModel)
        for op in ["add", "sub", "mul"] {
            let ft = try load("llama-ft-\(op)"), d = try set("\(op)-test")
            let mine = ft.network.evaluate(ft.params, on: d).accuracy, before = base.network.evaluate(base.params, on: d).accuracy
            XCTAssertGreaterThan(mine, before, "llama-ft-\(op) on its own operation")
        }
        let train = try set("train")
        for seed in 0..<2 {
            let g = try load("gpt2-seed\(seed)")
            XCTAssertGreaterThan(g.network.evaluate(g.params, on: train).accuracy, 0.99, "gpt2-seed\(seed)")
        }
    }
}
