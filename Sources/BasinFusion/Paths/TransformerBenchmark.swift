import BasinIO
import BasinNet
import BasinTensor
import Foundation

/// `basin bench transformer`: forward throughput of a GPT-2-small-shaped network (random weights, float32)
/// on random token batches, plainly and through the path evaluator.
public enum TransformerBenchmark {
    public struct Figure: Sendable, Codable, Equatable {
        public var layers: Int
        public var width: Int
        public var heads: Int
        public var vocabulary: Int
        public var sequence: Int
        public var batch: Int
        public var parameters: Int
        /// Best of `repeats` forward passes over one batch.
        public var forwardSeconds: Double
        public var forwardTokensPerSecond: Double
        /// Forward FLOPs per token (2 per multiply-add of every matrix product, attention included).
        public var flopsPerToken: Double
        public var forwardGflops: Double
        /// Path evaluation: `points` points of a linear path between two random models, loss on one batch each.
        public var pathPoints: Int
        public var pathSeconds: Double
        public var pathSetupSeconds: Double
        public var pathTokensPerSecond: Double
    }

    /// GPT-2 small: 12 layers, 768 wide, 12 heads, 50257 tokens, 1024 positions.
    public static func gpt2Small(layers: Int = 12, width: Int = 768, heads: Int = 12, vocabulary: Int = 50257, positions: Int = 1024) -> TransformerConfig {
        TransformerConfig(family: .gpt2, modelType: "gpt2", vocabularySize: vocabulary, hiddenSize: width, layers: layers, heads: heads,
                          keyValueHeads: heads, headDim: width / heads, intermediateSize: 4 * width, maxPositions: positions,
                          activation: .geluNew, normEpsilon: 1e-5, tiedEmbeddings: true, qkvBias: true, outputProjectionBias: true,
                          mlpBias: true)
    }

    public static func flopsPerToken(_ c: TransformerConfig, sequence: Int) -> Double {
        let d = Double(c.hiddenSize), f = Double(c.intermediateSize), l = Double(sequence)
        let qkvWidth = Double((c.heads + 2 * c.keyValueHeads) * c.headDim), att = Double(c.heads * c.headDim)
        // Projections + MLP per layer, attention scores and weighted sums (causal: about half of L x L, but
        // sgemm computes the full square), then the output layer.
        let perLayer = 2 * d * qkvWidth + 2 * att * d + 2 * 2 * d * f * (c.family == .llama ? 1.5 : 1) + 2 * 2 * l * att
        return Double(c.layers) * perLayer + 2 * d * Double(c.vocabularySize)
    }

    public static func run(config c: TransformerConfig = gpt2Small(), sequence: Int = 128, batch: Int = 8, repeats: Int = 3,
                           pathPoints: Int = 5, seed: UInt64 = 0) throws -> Figure {
        let built = TransformerArchitecture(config: c)
        let network = Network(built.architecture)
        let a = built.initialParameters(seed: seed)
        var g = SeededGenerator(seed: seed &+ 100)
        let ids = Tensor(shape: [batch, sequence], storage: (0..<(batch * sequence)).map { _ in Float(g.next() % UInt64(c.vocabularySize)) })
        _ = try built.architecture.validate(a)
        var best = Double.infinity
        for _ in 0..<max(1, repeats) {
            let t0 = Benchmarks.now()
            let z = network.logits(ids, a)
            best = min(best, Benchmarks.now() - t0)
            precondition(z.shape == [batch, sequence, c.vocabularySize])
        }
        let tokens = Double(batch * sequence)
        let flops = flopsPerToken(c, sequence: sequence)

        // Path evaluation between two random models: every t builds phi(t) and runs the network; the
        // embedding (linear in its parameters, reading the input) is combined from per-endpoint outputs.
        let b = built.initialParameters(seed: seed &+ 1)
        let labels = (0..<(batch * sequence)).map { _ in Int32(g.next() % UInt64(c.vocabularySize)) }
        let data = Dataset(x: ids, labels: labels, labelShape: [sequence], name: "random tokens", isTokens: true)
        let s0 = Benchmarks.now()
        let evaluator = PathEvaluator(path: try ModelPath.linear(a, b), network: network, datasets: [data], batchSize: batch)
        let setup = Benchmarks.now() - s0
        let p0 = Benchmarks.now()
        _ = evaluator.evaluatePoints(ts: ModelPath.grid(pathPoints))
        let pathSeconds = Benchmarks.now() - p0
        return Figure(layers: c.layers, width: c.hiddenSize, heads: c.heads, vocabulary: c.vocabularySize, sequence: sequence, batch: batch,
                      parameters: a.scalarCount, forwardSeconds: best, forwardTokensPerSecond: tokens / best, flopsPerToken: flops,
                      forwardGflops: flops * tokens / best / 1e9, pathPoints: pathPoints, pathSeconds: pathSeconds, pathSetupSeconds: setup,
                      pathTokensPerSecond: tokens * Double(pathPoints) / pathSeconds)
    }
}
