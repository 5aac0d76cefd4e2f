import BasinFusion
import BasinIO
import BasinNet
import BasinTensor
import BasinTestSupport
import Foundation
import XCTest

/// BatchNorm reset along paths (against PyTorch's update_bn curves) and REPAIR (against its definition).
final class PointCorrectionTests: XCTestCase {
    func model(_ net: String, _ file: String) throws -> LoadedModel {
        try LoadedModel(path: Fixtures.url("cnn/\(file).safetensors").path,
                        architecture: ArchitectureChoice(file: Fixtures.url("cnn/\(net).arch.json")))
    }

    func expected(_ net: String) throws -> [String: Any] {
        (try Fixtures.json("cnn/expected.json") as! [String: Any])[net] as! [String: Any]
    }

    /// The linear path with every point's statistics recomputed over digits-train (batch 64, dataset order)
    /// agrees with PyTorch's `linear_test_bn_reset` to 1e-3, and so does its barrier. A debug build resets a
    /// point in about three seconds, so the test takes the endpoints, the quarter points and the t where each
    /// network's barrier is reached (0.5 for vgg, 0.45 for resnet); `basin path --bn-reset` (CNNCLITests) and
    /// docs/cnn.md cover all 21. The fast evaluator (first convolution combined) and the naive one agree, and
    /// the point an export writes is PyTorch's midpoint after update_bn.
    func testBatchNormResetPathMatchesPyTorch() throws {
        let train = try Dataset(url: Fixtures.digitsTrain), test = try Dataset(url: Fixtures.digitsTest)
        for (net, ts) in [("vgg", [0, 0.25, 0.5, 0.75, 1]), ("resnet", [0, 0.45, 1])] {
            let a = try model(net, "\(net)-seed0"), b = try model(net, "\(net)-seed1")
            let reset = try BatchNormReset(network: a.network, data: train, batchSize: 64)
            XCTAssertEqual(reset.batches, 21)
            let e = try expected(net)
            let points = (e["linear_test_bn_reset"] as! [[Double]]).filter { p in ts.contains { abs($0 - p[0]) < 1e-9 } }
            XCTAssertEqual(points.count, ts.count)
            let evaluator = PathEvaluator(path: try .linear(a.params, b.params), network: a.network, datasets: [test],
                                          batchSize: 512, correction: .bnReset(reset))
            XCTAssertTrue(evaluator.usesFirstLayerShortcut)
            let m = try XCTUnwrap(evaluator.metrics(ts: points.map { $0[0] }))[0]
            for (got, want) in zip(m.points, points) {
                XCTAssertEqual(got.loss, want[1], accuracy: 1e-3, "\(net) t=\(want[0])")
                XCTAssertEqual(got.accuracy, want[2], accuracy: 1e-3, "\(net) t=\(want[0])")
            }
            // The barrier's t is among the points, so the barrier is PyTorch's over all 21.
            XCTAssertEqual(m.barrier.loss, e["linear_test_bn_reset_barrier"] as! Double, accuracy: 1e-3, net)
            guard net == "vgg" else { continue }
            let mid = try evaluator.correctedParameters(at: 0.5)
            let want = try ParameterSet(source: SafeTensorsFile(url: Fixtures.url("cnn/\(net)-midpoint-bn-reset.safetensors")))
            for name in want.names {
                XCTAssertLessThanOrEqual(mid[name]!.maxAbsDifference(want[name]!), 1e-4 * max(1, want[name]!.maxAbs), "\(net) \(name)")
            }
            let naive = PathEvaluator(path: try .linear(a.params, b.params), network: a.network, datasets: [test], fast: false,
                                      correction: .bnReset(reset)).evaluate(at: 0.5)[0]
            XCTAssertEqual(naive.loss, m.points[2].loss, accuracy: 1e-5, net)
        }
    }

    func testBatchNormResetNeedsBatchNormAndData() throws {
        let mlp = try LoadedModel(path: Fixtures.mlpSeed0.path)
        let train = try Dataset(url: Fixtures.digitsTrain)
        XCTAssertThrowsError(try BatchNormReset(network: mlp.network, data: train)) { error in
            XCTAssertEqual((error as? PointCorrectionError)?.kind, .noBatchNorm)
        }
        let vgg = try model("vgg", "vgg-seed0")
        XCTAssertThrowsError(try BatchNormReset(network: vgg.network, data: train.slice(0..<0))) { error in
            XCTAssertEqual((error as? PointCorrectionError)?.kind, .emptyData)
        }
        XCTAssertThrowsError(try BatchNormReset(network: vgg.network, data: train, batchSize: 0)) { error in
            XCTAssertEqual((error as? PointCorrectionError)?.kind, .invalidArgument)
        }
    }

    /// Per-channel mean and unbiased variance of [N, C, ...], written out longhand.
    func channelMoments(_ y: Tensor) -> [(Double, Double)] {
        let n = y.shape[0], c = y.shape[1], inner = y.count / (n * c)
        return (0..<c).map { ch in
            var values: [Double] = []
            for i in 0..<n { for j in 0..<inner { values.append(Double(y[(i * c + ch) * inner + j])) } }
            let mean = values.reduce(0, +) / Double(values.count)
            let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)
            return (mean, variance)
        }
    }

    /// REPAIR on the VGG pair at t = 0.5: the sites are the BatchNorms after the convolutions; the first site's
    /// statistics are the batch averages of the naive midpoint's BatchNorm output (nothing before it is
    /// repaired); the goal is the average of the endpoints' statistics; the repaired network's sites then carry
    /// the goal statistics; folding gives the same function with the model's own tensors; and REPAIR lowers
    /// the midpoint's loss far below the naive one.
    func testRepairRenormalisesToTheEndpointsStatistics() throws {
        let train = try Dataset(url: Fixtures.digitsTrain), test = try Dataset(url: Fixtures.digitsTest)
        let a = try model("vgg", "vgg-seed0"), b = try model("vgg", "vgg-seed1-matched")
        let repair = try Repair(network: a.network, like: a.params, data: train, batchSize: 64)
        XCTAssertEqual(repair.sites.map(\.name), ["features.1", "features.4", "features.8"])
        XCTAssertEqual(repair.sites.map(\.channels), [16, 16, 32])

        let mid = ParameterSet.lerp(a.params, b.params, 0.5)
        let sa = repair.statistics(a.params), sb = repair.statistics(b.params)
        let goal = Repair.Statistics.combination([(sa, 0.5), (sb, 0.5)])
        let repaired = repair.apply(mid, goal: goal)

        // Site 0 by hand: the naive midpoint's features.1 output over the 21 batches.
        let site = repair.sites[0]
        var sums = [(Double, Double)](repeating: (0, 0), count: site.channels)
        var batches = 0
        for start in stride(from: 0, to: train.count, by: 64) {
            let y = a.network.run(train.x.rows(start..<min(train.count, start + 64)), mid,
                                  Network.RunOptions(expose: [site.node], targets: [site.node])).outputs[site.node]!
            for (ch, mv) in channelMoments(y).enumerated() { sums[ch].0 += mv.0; sums[ch].1 += mv.1 }
            batches += 1
        }
        XCTAssertEqual(batches, 21)
        for ch in 0..<site.channels {
            XCTAssertEqual(Double(repaired[site.runningMean]![ch]), sums[ch].0 / 21, accuracy: 1e-4 * max(1, abs(sums[ch].0 / 21)))
            XCTAssertEqual(Double(repaired[site.runningVar]![ch]), sums[ch].1 / 21, accuracy: 1e-4 * max(1, sums[ch].1 / 21))
            XCTAssertEqual(Double(repaired[site.weight]![ch]), goal.std[0][ch], accuracy: 1e-6 * max(1, goal.std[0][ch]))
            XCTAssertEqual(goal.mean[0][ch], (sa.mean[0][ch] + sb.mean[0][ch]) / 2, accuracy: 1e-12)
        }

        // The repaired network's sites (the inserted layers' outputs, eval mode) carry the goal statistics.
        let inserted = Set(repair.sites.map(\.insertedNode))
        var outMean = repair.sites.map { [Double](repeating: 0, count: $0.channels) }, outVar = outMean
        for start in stride(from: 0, to: train.count, by: 64) {
            let trace = repair.repairedNetwork.run(train.x.rows(start..<min(train.count, start + 64)), repaired,
                                                   Network.RunOptions(expose: inserted, targets: inserted))
            for (k, s) in repair.sites.enumerated() {
                for (ch, mv) in channelMoments(trace.outputs[s.insertedNode]!).enumerated() { outMean[k][ch] += mv.0 / 21; outVar[k][ch] += mv.1 / 21 }
            }
        }
        for k in repair.sites.indices {
            for ch in 0..<repair.sites[k].channels {
                let std = goal.std[k][ch]
                XCTAssertEqual(outMean[k][ch], goal.mean[k][ch], accuracy: 0.05 * std + 1e-4, "site \(k) channel \(ch)")
                XCTAssertEqual(outVar[k][ch].squareRoot(), std, accuracy: 0.05 * std + 1e-4, "site \(k) channel \(ch)")
            }
        }

        // Folded into the BatchNorms: the same function with the model's own tensors.
        let folded = try repair.fold(repaired)
        XCTAssertEqual(Set(folded.names), Set(a.params.names))
        let x = test.x.rows(0..<100)
        let z1 = repair.repairedNetwork.logits(x, repaired), z2 = a.network.logits(x, folded)
        XCTAssertLessThanOrEqual(z1.maxAbsDifference(z2), 1e-4 * max(1, z1.maxAbs))

        let naive = a.network.evaluate(mid, on: test), fixed = a.network.evaluate(folded, on: test)
        XCTAssertLessThan(fixed.loss, naive.loss / 2, "REPAIR should undo most of the midpoint's variance collapse")

        // At an endpoint the goal is the model's own statistics: REPAIR changes it very little.
        let end = repair.repairedNetwork.evaluate(repair.apply(a.params, goal: sa), on: test)
        XCTAssertEqual(end.loss, a.network.evaluate(a.params, on: test).loss, accuracy: 0.02)
    }

    /// Through the path evaluator and on a network without BatchNorm (the MLP pair: the hidden linear layers are
    /// the sites, the logits are not); a conv without bias and no BatchNorm cannot be folded.
    func testRepairAlongPathsAndWithoutBatchNorm() throws {
        let train = try Dataset(url: Fixtures.digitsTrain), test = try Dataset(url: Fixtures.digitsTest)
        let a = try LoadedModel(path: Fixtures.mlpSeed0.path), b = try LoadedModel(path: Fixtures.mlpSeed1.path)
        let repair = try Repair(network: a.network, like: a.params, data: train)
        XCTAssertEqual(repair.sites.map(\.channels), [128, 128])
        let path = try ModelPath.linear(a.params, b.params)
        let evaluator = PathEvaluator(path: path, network: a.network, datasets: [test], correction: .repair(repair))
        let mid = evaluator.evaluate(at: 0.5)[0]
        let direct = repair.repairedNetwork.evaluate(repair.repair(path.parameters(at: 0.5), endpoints: [(a.params, 0.5), (b.params, 0.5)]), on: test)
        XCTAssertEqual(mid.loss, direct.loss, accuracy: 1e-6)
        let written = try evaluator.correctedParameters(at: 0.5)
        XCTAssertEqual(a.network.evaluate(written, on: test).loss, mid.loss, accuracy: 1e-4)

        let arch = Architecture(nodes: [
            Node(name: "conv", op: Conv2d(weight: "conv.weight", bias: nil, outChannels: 2, kernel: [3, 3], padding: [1, 1]), inputs: [-1]),
            Node(name: "relu", op: ActivationOp(.relu), inputs: [0]),
            Node(name: "pool", op: GlobalAvgPool(), inputs: [1]),
            Node(name: "fc", op: Linear(weight: "fc.weight", bias: "fc.bias", outFeatures: 10), inputs: [2]),
        ], inputShape: [1, 8, 8])
        var g = SeededGenerator(seed: 1)
        let p = try arch.initialParameters(generator: &g)
        let r = try Repair(network: Network(arch), like: p, data: train)
        XCTAssertEqual(r.sites.map(\.name), ["conv"])
        XCTAssertThrowsError(try r.fold(r.repair(p, endpoints: [(p, 1)]))) { error in
            XCTAssertEqual((error as? PointCorrectionError)?.kind, .cannotFold)
            XCTAssertEqual((error as? PointCorrectionError)?.node, "conv")
        }
    }

    /// REPAIR's goal for a `basin_path` recipe is the path's own weights at t over its control points: (1 - t, t)
    /// on a straight line, the two neighbouring models with local weights on a chain through models, the
    /// Bernstein weights over [A, bend, B] on a fitted Bezier curve (the bend read from its bends file as a
    /// member, measured like a model), so `basin merge --repair` reproduces `PathEvaluator`'s goal at t exactly.
    func testBasinPathRecipesAreWeightedMeansOfTheirControlPoints() throws {
        let dir = try Fixtures.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let train = try Dataset(url: Fixtures.digitsTrain).slice(0..<128)
        let models = try [Fixtures.mlpSeed0, Fixtures.mlpSeed1].map { try LoadedModel(path: $0.path) }
        let third = dir.appendingPathComponent("third.safetensors")
        try ParameterSet.lerp(models[0].params, models[1].params, 0.3).write(to: third)
        func recipe(_ yaml: String) throws -> MergeRecipe {
            let url = dir.appendingPathComponent("r.yaml")
            try yaml.write(to: url, atomically: true, encoding: .utf8)
            return try MergeRecipe.load(url)
        }
        let a = Fixtures.mlpSeed0.path, b = Fixtures.mlpSeed1.path
        // The straight line.
        var c = try recipe("merge_method: basin_path\nbasin_path: {type: linear}\nparameters: {t: 0.3}\nmodels:\n  - model: \(a)\n  - model: \(b)\n").combinationWeights()
        var (members, weights) = (c.members, c.weights)
        XCTAssertEqual(members, [.model(Fixtures.mlpSeed0), .model(Fixtures.mlpSeed1)])
        XCTAssertEqual(weights[0], 0.7, accuracy: 1e-12)
        XCTAssertEqual(weights[1], 0.3, accuracy: 1e-12)
        // A chain through three models: t = 0.75 is the middle of the second segment.
        c = try recipe("merge_method: basin_path\nbasin_path: {type: linear}\nparameters: {t: 0.75}\nmodels:\n  - model: \(a)\n  - model: \(third.path)\n  - model: \(b)\n").combinationWeights()
        (members, weights) = (c.members, c.weights)
        XCTAssertEqual(members.count, 3)
        XCTAssertEqual(weights, [0, 0.5, 0.5])
        // A Bezier curve with one fitted bend.
        let bend = ParameterSet.lerp(models[0].params, models[1].params, 0.5).mapTensors { $1 * 1.1 }
        let path = try ModelPath.withBends(.bezier, from: models[0].params, to: models[1].params, bends: [bend])
        let bends = dir.appendingPathComponent("bends.safetensors")
        try BendsFile.write(path, to: bends, startSHA256: "", endSHA256: "")
        let bezier = try recipe("merge_method: basin_path\nbasin_path: {type: bezier, bends: \(bends.path)}\nparameters: {t: 0.25}\nmodels:\n  - model: \(a)\n  - model: \(b)\n")
        c = try bezier.combinationWeights()
        (members, weights) = (c.members, c.weights)
        XCTAssertEqual(members, [.model(Fixtures.mlpSeed0), .bend(bends, index: 1), .model(Fixtures.mlpSeed1)])
        XCTAssertEqual(weights, [0.5625, 0.375, 0.0625])
        // The bends file was read once, when the recipe was resolved: the members load without it.
        let kept = try Data(contentsOf: bends)
        try FileManager.default.removeItem(at: bends)
        let params = try c.load { try LoadedModel(path: $0.path).params }
        try kept.write(to: bends)
        XCTAssertEqual(params[1], bend)
        // Bends that do not fit the models are refused naming the file and the tensor, when loaded.
        XCTAssertThrowsError(try c.load { _ in ParameterSet([("other", Tensor(shape: [1], storage: [0]))]) }) { error in
            XCTAssertEqual((error as? BasinIOError)?.kind, .missingTensor, "\(error)")
            XCTAssertTrue("\(error)".contains(bends.lastPathComponent), "\(error)")
        }
        // A bends file of another path type is no goal for this recipe.
        let chain = try recipe("merge_method: basin_path\nbasin_path: {type: polychain, bends: \(bends.path)}\nparameters: {t: 0.25}\nmodels:\n  - model: \(a)\n  - model: \(b)\n")
        XCTAssertThrowsError(try chain.combinationWeights()) { error in
            XCTAssertEqual((error as? PointCorrectionError)?.kind, .invalidArgument)
            XCTAssertTrue("\(error)".contains("bezier"), "\(error)")
        }
        // The goal is the path evaluator's at the same t, and so is the repaired point.
        let repair = try Repair(network: models[0].network, like: models[0].params, data: train)
        let correction = CombinationCorrection(.repair(repair), models: params)
        let evaluator = PathEvaluator(path: path, network: models[0].network, datasets: [], correction: .repair(repair))
        XCTAssertEqual(try correction.repairGoal(weights: weights), evaluator.repairGoal(at: 0.25))
        XCTAssertEqual(try correction.parameters(path.parameters(at: 0.25), weights: weights), try evaluator.correctedParameters(at: 0.25))
        // A per-layer t has no single goal.
        XCTAssertThrowsError(try recipe("merge_method: basin_path\nbasin_path: {type: linear}\nparameters: {t: [0.2, 0.8]}\nmodels:\n  - model: \(a)\n  - model: \(b)\n").combinationWeights()) { error in
            XCTAssertEqual((error as? PointCorrectionError)?.kind, .invalidArgument)
        }
    }
}
