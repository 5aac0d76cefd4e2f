import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// `basin bench path`: evaluating a linear path at many points over a synthetic MLP.
package enum PathBenchmark {
    package struct Figure: Codable, Sendable {
        package var type: PathType
        package var bends: Int
        package var sizes: [Int]
        package var samples: Int
        package var points: Int
        package var batchSize: Int
        /// Time to prepare the evaluator (first-layer products; 0 for naive) and to evaluate every point.
        package var setupSeconds: Double
        package var seconds: Double
        /// FLOPs of the naive evaluation: points x samples x forward FLOPs per sample.
        package var naiveFlops: Double
        /// naiveFlops / seconds (setup included), in GFLOP/s.
        package var effectiveGflops: Double
        package var usesFirstLayerShortcut: Bool
    }

    /// Times a `points`-point path between two random MLPs of `sizes` on `samples` synthetic samples
    /// (best of `repeats`, setup included in each run). Polychain and Bezier paths get `bends` random bends.
    package static func run(sizes: [Int] = [784, 512, 512, 10], samples: Int = 10_000, points: Int = 21,
                           batchSize: Int = 512, fast: Bool = true, repeats: Int = 5,
                           type: PathType = .linear, bends: Int = 1) -> Figure {
        let (network, a, data) = Benchmarks.syntheticMLP(sizes: sizes, samples: samples, seed: 7)
        let (_, b, _) = Benchmarks.syntheticMLP(sizes: sizes, samples: 1, seed: 8)
        let path = type == .linear ? try! ModelPath.linear(a, b)
            : try! ModelPath.withBends(type, from: a, to: b, bends: (0..<max(1, bends)).map { j in
                Benchmarks.syntheticMLP(sizes: sizes, samples: 1, seed: 9 + UInt64(j)).1
            })
        let ts = ModelPath.grid(points)
        var bestTotal = Double.infinity, bestSetup = 0.0
        var shortcut = false
        for _ in 0..<max(1, repeats) {
            let t0 = Benchmarks.now()
            let evaluator = PathEvaluator(path: path, network: network, datasets: [data], batchSize: batchSize, fast: fast)
            let t1 = Benchmarks.now()
            _ = evaluator.evaluatePoints(ts: ts)
            let t2 = Benchmarks.now()
            shortcut = evaluator.usesFirstLayerShortcut
            if t2 - t0 < bestTotal {
                bestTotal = t2 - t0
                bestSetup = t1 - t0
            }
        }
        let flops = Double(points) * Double(samples) * Benchmarks.mlpFlopsPerSample(sizes)
        return Figure(type: type, bends: path.bends.count, sizes: sizes, samples: samples, points: points, batchSize: batchSize, setupSeconds: bestSetup,
                      seconds: bestTotal, naiveFlops: flops, effectiveGflops: flops / bestTotal / 1e9,
                      usesFirstLayerShortcut: shortcut)
    }
}
