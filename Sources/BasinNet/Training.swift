import BasinIO
import BasinTensor
import Foundation

/// Minibatch training of a network on a data set: seeded, so the same settings give the same bits.
public struct TrainingConfig: Sendable {
    public var optimizer: OptimizerKind = .adam
    public var learningRate: Float = 1e-3
    public var momentum: Float = 0.9
    public var weightDecay: Float = 0
    public var epochs: Int = 10
    public var batchSize: Int = 64
    public var seed: UInt64 = 0

    public init() {}
}

public struct EpochReport: Sendable {
    public var epoch: Int
    public var meanLoss: Double
    public var accuracy: Double
}

public enum Trainer {
    /// PyTorch's default nn.Linear initialisation for a chain of linear layers of widths `sizes`: weight
    /// and bias uniform in +-1/sqrt(fan_in).
    public static func initialise(_ architecture: Architecture, sizes: [Int], generator: inout SeededGenerator) -> ParameterSet {
        var params = ParameterSet()
        for (i, node) in architecture.linearNodes.enumerated() {
            let linear = architecture.nodes[node].op as! Linear
            for (name, t) in Linear.initialise(weight: linear.weight, bias: linear.bias, fanIn: sizes[i], fanOut: sizes[i + 1], generator: &generator) {
                params[name] = t
            }
        }
        return params
    }

    /// Trains `params` in place (the trained parameters by the optimiser, buffers such as BatchNorm's
    /// running statistics by the train-mode forward); calls `progress` after each epoch and `checkpoint`
    /// with the epoch number and the parameters after it.
    public static func train(network: Network, params: inout ParameterSet, data: Dataset, config: TrainingConfig,
                             progress: (EpochReport) -> Void = { _ in },
                             checkpoint: (Int, ParameterSet) throws -> Void = { _, _ in }) rethrows {
        var generator = SeededGenerator(seed: config.seed)
        var optimizer = config.optimizer.make(learningRate: config.learningRate, momentum: config.momentum, weightDecay: config.weightDecay)
        let trained = Set(network.architecture.trainedParameterNames)
        let names = params.names.filter { trained.contains($0) }
        let totalPositions = max(1, data.y.reduce(0) { $0 + ($1 == Dataset.ignored ? 0 : 1) })
        for epoch in 1...max(1, config.epochs) {
            let order = generator.permutation(data.count)
            var lossSum = 0.0, correct = 0.0
            var start = 0
            while start < data.count {
                let idx = Array(order[start..<min(data.count, start + config.batchSize)])
                let xb = data.x.gatherRows(idx)
                let yb = data.labels(at: idx)
                let step = network.step(params, x: xb, y: yb)
                let positions = Double(yb.reduce(0) { $0 + ($1 == Dataset.ignored ? 0 : 1) })
                lossSum += step.metrics.loss * positions
                correct += step.metrics.accuracy * positions
                var tensors = names.map { params[$0]! }
                optimizer.step(&tensors, gradients: names.map { step.gradients[$0] ?? Tensor.zeros(like: params[$0]!) })
                for (n, t) in zip(names, tensors) { params[n] = t }
                for (n, t) in step.bufferUpdates { params[n] = t }
                start += config.batchSize
            }
            progress(EpochReport(epoch: epoch, meanLoss: lossSum / Double(totalPositions), accuracy: correct / Double(totalPositions)))
            try checkpoint(epoch, params)
        }
    }
}
