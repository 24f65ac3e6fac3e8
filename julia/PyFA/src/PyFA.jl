"""
    PyFA

Feedback Alignment (FA) for Flux: layers whose backward pass sends the error to their input
through a feedback matrix `B` instead of the forward weights `W`.

- [`DenseFA`](@ref) (a dense layer) and [`fa_matmul`](@ref), the product carrying its rule;
- [`ConvFA`](@ref) (a convolution, cross-correlation as PyTorch's `Conv2d`) and [`fa_conv`](@ref);
- [`DFAChain`](@ref), direct feedback alignment for chains of `DenseFA` and `ConvFA` (pooling
  and flatten between them): every hidden layer hears the network's output error through its own
  fixed matrix;
- [`feedback_matrix`](@ref): the `B` of each mode (`:fa`, `:bp`, `:usf`, `:frsf`, `:brsf`, `:kp`).

For `y = σ.(W * x .+ b)` with upstream cotangent `δ = ∂L/∂(W*x .+ b)`:

    ∂L/∂W = δ xᵀ        ∂L/∂b = Σ_batch δ        (true gradients)
    ∂L/∂x := Bᵀ δ                                (FA; backprop would use Wᵀ δ)

`B` has the shape of `W`. It gets no gradient and no optimiser touches it, except in mode `:kp`
(Kolen-Pollack), where it receives `∂L/∂B := ∂L/∂W` and is trained along with `W`.
"""
module PyFA

using ChainRulesCore: ChainRulesCore, NoTangent, ProjectTo, @thunk, unthunk
using Flux: Flux, DenseConvDims, SamePad, conv, ∇conv_data, ∇conv_filter
using Random: Random, AbstractRNG, randn!

export DenseFA, ConvFA, DFAChain, fa_matmul, fa_conv, feedback_matrix, direct_feedback_of

"""Layer modes, shared by name with the Python side (`pyfa.network.MODES` plus `kp`)."""
const FA_MODES = (:fa, :bp, :usf, :brsf, :frsf, :kp)

"""
    fa_matmul(weight, x, feedback) = weight * x
    fa_matmul(weight, x, feedback, mode::Symbol) = weight * x

The forward pass is the ordinary product; `feedback` (and `mode`) only serve the backward pass.
The `rrule`s give the true `∂weight = ȳ xᵀ` but send `∂x = Bᵀ ȳ` to the input: `B = feedback` in
the three-argument form, `B = feedback_matrix(mode, weight, feedback)` in the four-argument one,
built inside the pullback only, so that a forward pass never computes `B` (nor draws the random
`R` of mode `:brsf`). `feedback` gets no tangent, except in mode `:kp` (Kolen-Pollack), where it
gets a copy of `∂weight`; `mode` never does. Arguments are typed as the rules are, so no call can
reach the plain product without also matching a rule.

Zygote (Flux's default AD) applies these `ChainRulesCore.rrule`s. Enzyme and Mooncake ignore
ChainRules rules; PyFA's package extensions give them the same ones when they are loaded:
`ext/PyFAEnzymeExt.jl` (`EnzymeRules`) and `ext/PyFAMooncakeExt.jl` (`Mooncake.@from_rrule`).
"""
fa_matmul(weight::AbstractMatrix, x::AbstractVecOrMat, ::AbstractMatrix) = weight * x
fa_matmul(weight::AbstractMatrix, x::AbstractVecOrMat, ::AbstractMatrix, mode::Symbol) =
    (_check_mode(mode); weight * x)

function ChainRulesCore.rrule(::typeof(fa_matmul), weight::AbstractMatrix,
                              x::AbstractVecOrMat, feedback::AbstractMatrix)
    y = weight * x
    project_weight = ProjectTo(weight)
    project_x = ProjectTo(x)
    function fa_matmul_pullback(ȳ)
        δ = unthunk(ȳ)
        ∂weight = @thunk project_weight(δ * x')
        ∂x = @thunk project_x(feedback' * δ)  # FA: feedbackᵀ δ, where backprop has weightᵀ δ
        return (NoTangent(), ∂weight, ∂x, NoTangent())
    end
    return y, fa_matmul_pullback
end

function ChainRulesCore.rrule(::typeof(fa_matmul), weight::AbstractMatrix,
                              x::AbstractVecOrMat, feedback::AbstractMatrix, mode::Symbol)
    _check_mode(mode)
    y = weight * x
    project_weight = ProjectTo(weight)
    project_x = ProjectTo(x)
    function fa_matmul_mode_pullback(ȳ)
        δ = unthunk(ȳ)
        B = _feedback_matrix(mode, weight, feedback)  # here, once per backward pass, never forward
        ∂x = @thunk project_x(B' * δ)  # FA: Bᵀ δ, where backprop has weightᵀ δ
        ∂weight, ∂feedback = _weight_and_feedback_tangents(mode, () -> project_weight(δ * x'))
        return (NoTangent(), ∂weight, ∂x, ∂feedback, NoTangent())
    end
    return y, fa_matmul_mode_pullback
end

"""
    _weight_and_feedback_tangents(mode, ∂weight) -> (∂weight, ∂feedback)

The tangents of a layer's weight and feedback, given a function `∂weight()` computing the
weight's (true) gradient. In mode `:kp` (Kolen-Pollack) the feedback receives the weight's
gradient, `∂feedback = ∂weight` (a copy, so that no two parameters share one gradient array);
in every other mode the weight's gradient is a thunk and the feedback gets `NoTangent()`.
"""
function _weight_and_feedback_tangents(mode::Symbol, ∂weight)
    mode === :kp || return (@thunk(∂weight()), NoTangent())
    ∂w = ∂weight()
    return (∂w, copy(∂w))
end

_check_mode(mode::Symbol) = mode in FA_MODES ? nothing : _throw_unknown_mode(mode)
@noinline _throw_unknown_mode(mode) =
    throw(ArgumentError("unknown FA mode :$mode; expected one of $FA_MODES"))
ChainRulesCore.@non_differentiable _check_mode(::Any)

"""
    feedback_matrix(mode, weight, feedback) -> B

The array, shaped like `weight`, through which a layer sends its error to its input: a dense
weight `out × in`, or a conv kernel `(k..., in ÷ groups, out)`. With `s = sqrt(2 / (fan_in +
fan_out))` (the Glorot standard deviation of the weight's shape, `Flux.nfan`: for a dense weight
`in + out`, for a kernel `prod(k) * (in ÷ groups + out)`, PyTorch's fans):

- `:fa`   — `B = feedback` (fixed random)
- `:kp`   — `B = feedback`, which is trained (Kolen-Pollack: it receives `∂weight`)
- `:bp`   — `B = weight` (exact backprop)
- `:usf`  — `B = sign.(weight) .* s`
- `:frsf` — `B = abs.(feedback) .* sign.(weight)` (`feedback` holds the fixed `R`)
- `:brsf` — `B = abs.(R) .* sign.(weight)`, `R ~ N(0, s²)` drawn afresh on every call

It is marked non-differentiable: no gradient reaches `weight` or `feedback` through `B`, in any
mode (under Zygote by `ChainRulesCore.@non_differentiable`, under Enzyme and Mooncake by PyFA's
extensions: `EnzymeRules.inactive`, `Mooncake.@zero_derivative`). The value is always a new array,
never an argument itself (in modes `:fa`, `:kp` and `:bp` a copy of `feedback` or `weight`):
Mooncake's `@zero_derivative` is correct only for a function whose output aliases none of its
arguments, and Enzyme takes the output of an `inactive` function for constant memory, which an
alias of an active `weight` is not. The rules build `B` with the internal `_feedback_matrix`,
which returns the stored array itself (no copy) and runs only inside their pullbacks, never in
differentiated code.
"""
function feedback_matrix(mode::Symbol, weight::AbstractArray, feedback::AbstractArray)
    B = _feedback_matrix(mode, weight, feedback)
    return B === feedback || B === weight ? copy(B) : B
end
feedback_matrix(mode::AbstractString, weight, feedback) = feedback_matrix(Symbol(mode), weight, feedback)

ChainRulesCore.@non_differentiable feedback_matrix(::Any, ::Any, ::Any)

"""
    _feedback_matrix(mode, weight, feedback) -> B

[`feedback_matrix`](@ref)'s `B`, but for `:fa`, `:kp` and `:bp` the stored array itself, not a
copy. Called by the rules' pullbacks only (once per backward pass), which no AD differentiates:
it carries no non-differentiable mark, and must not be called in a forward pass.
"""
function _feedback_matrix(mode::Symbol, weight::AbstractArray, feedback::AbstractArray)
    (mode === :fa || mode === :kp) && return feedback
    mode === :bp && return weight
    mode === :frsf && return abs.(feedback) .* sign.(weight)
    s = convert(eltype(weight), sqrt(2 / sum(Flux.nfan(size(weight)))))
    mode === :usf && return sign.(weight) .* s
    mode === :brsf && return abs.(randn!(similar(weight))) .* s .* sign.(weight)
    _throw_unknown_mode(mode)
end

"""
    DenseFA(in => out, σ=identity; bias=true, init=Flux.glorot_uniform, mode=:fa, rng=Random.default_rng())
    DenseFA(weight::AbstractMatrix, feedback::AbstractMatrix, [bias, σ, mode])

A fully connected layer trained by Feedback Alignment. The forward pass is Flux's `Dense`:

    y = σ.(weight * x .+ bias)

for `x` a vector of length `in` or an `in × batch` matrix (or any array with `size(x, 1) == in`);
as in `Dense`, an input of another element type (Float64 for Float32 weights, integers) is first
converted to the weights' (Flux's `_match_eltype`, which warns once about Float64 input).
In the backward pass `weight` and `bias` get their true gradients, but the error reaching `x` is
`Bᵀ δ` with `B = feedback_matrix(mode, weight, feedback)`, built in the pullback only; see
[`feedback_matrix`](@ref) for the modes `:fa` (default), `:bp`, `:usf`, `:frsf`, `:brsf`, `:kp`.

Fields, in order: `weight` and `feedback` (both `out × in`), `bias` (a vector, or `false`), `σ`, and
`mode::Symbol`. `feedback` is an ordinary field, so `gpu`, `cpu`, `f32`, `f64` and `fmap` move and
convert it with the weights. It is not trainable (`Flux.trainable` gives `weight` and `bias`), so
`Flux.setup`/`Flux.update!` never change it — except in mode `:kp` (Kolen-Pollack), where
`Flux.trainable` gives `weight`, `bias` and `feedback`, and the rule hands `feedback` the weight's
gradient: with the same optimiser and weight decay `λ` on both (`OptimiserChain(WeightDecay(λ),
Descent(η))`, or `AdamW`), `W - B` shrinks by `(1 - ηλ)` per SGD step and `B` comes to align
with `W`. `init(rng, out, in)` draws `weight` and, independently, `feedback`. Given the very
same array as `weight` and `feedback`, the constructor copies it: an alias would be updated with
the weight, and `B` tracking `W` is backprop.

The FA rule applies under every AD Flux offers: Zygote (the default, `Flux.gradient(f, m)`),
Enzyme (`Flux.gradient(f, AutoEnzyme(), m)` or `Flux.gradient(f, Duplicated(m))`, once Enzyme is
loaded) and Mooncake (`Flux.gradient(f, AutoMooncake(), m)`, once Mooncake is loaded; plain
`Array`s of Float32 or Float64 only, anything else raises instead of falling back to backprop).

GPU: nothing in the layer is CUDA-specific. With CUDA.jl and cuDNN.jl in the environment,
`using CUDA, cuDNN` then `model = gpu(model)` moves weights and feedback to the GPU, and the same
rule runs on `CuArray`s (check `CUDA.functional()` at run time).

# Examples
```julia
using PyFA, Flux
layer = DenseFA(5 => 2, tanh)                 # 5 inputs, 2 outputs, mode :fa
size(layer(rand32(5, 64)))                    # (2, 64)

model = Chain(DenseFA(5 => 8, relu), DenseFA(8 => 1; mode = :usf))
x, y = rand32(5, 16), rand32(1, 16)
grads = Flux.gradient(m -> Flux.mse(m(x), y), model)[1]
grads.layers[1].feedback === nothing          # true: feedback gets no gradient

opt = Flux.setup(Adam(1e-3), model)           # state for weight and bias only
Flux.update!(opt, model, grads)

kp = Chain(DenseFA(5 => 8, relu; mode = :kp), DenseFA(8 => 1; mode = :kp))
opt = Flux.setup(OptimiserChain(WeightDecay(1f-3), Descent(0.1f0)), kp)  # B trained too
```
"""
struct DenseFA{F, M<:AbstractMatrix, N<:AbstractMatrix, B}
    weight::M
    feedback::N
    bias::B
    σ::F
    mode::Symbol
    function DenseFA(weight::M, feedback::N, bias = true, σ::F = identity,
                     mode::Symbol = :fa) where {M<:AbstractMatrix, N<:AbstractMatrix, F}
        size(feedback) == size(weight) || throw(DimensionMismatch(string(
            "DenseFA: feedback must have the weight's shape (out, in) = ", size(weight),
            ", got ", size(feedback))))
        mode in FA_MODES || throw(ArgumentError("DenseFA: unknown mode :$mode; expected one of $FA_MODES"))
        b = Flux.create_bias(weight, bias, size(weight, 1))
        fb = feedback === weight ? copy(feedback) : feedback
        return new{F, M, typeof(fb), typeof(b)}(weight, fb, b, σ, mode)
    end
end

DenseFA(weight::AbstractMatrix, feedback::AbstractMatrix, bias, σ, mode::AbstractString) =
    DenseFA(weight, feedback, bias, σ, Symbol(mode))

function DenseFA((in, out)::Pair{<:Integer, <:Integer}, σ = identity;
                 bias = true, init = Flux.glorot_uniform, mode = :fa,
                 rng::AbstractRNG = Random.default_rng())
    return DenseFA(init(rng, out, in), init(rng, out, in), bias, σ, Symbol(mode))
end

Flux.@layer DenseFA

# The feedback is trainable in mode :kp only. A NamedTuple, as Optimisers 0.4 wants: it matches
# fields by name (a Tuple would be matched by value, training a feedback equal to the weight).
function Flux.trainable(a::DenseFA)
    a.mode === :kp && return (; weight = a.weight, bias = a.bias, feedback = a.feedback)
    return (; weight = a.weight, bias = a.bias)
end

function (a::DenseFA)(x::AbstractVecOrMat)
    _check_input(a, x)
    xT = Flux._match_eltype(a, x)  # as Flux's Dense does
    return a.σ.(fa_matmul(a.weight, xT, a.feedback, a.mode) .+ a.bias)
end

function (a::DenseFA)(x::AbstractArray)
    _check_input(a, x)
    return reshape(a(reshape(x, size(x, 1), :)), :, size(x)[2:end]...)
end

function _check_input(a::DenseFA, x::AbstractArray)
    n = size(a.weight, 2)
    ndims(x) >= 1 && size(x, 1) == n && return nothing
    throw(DimensionMismatch(string(
        "DenseFA(", n, " => ", size(a.weight, 1), ") expects an input with size(x, 1) == ", n,
        " (features × batch), got ", summary(x))))
end
ChainRulesCore.@non_differentiable _check_input(::Any, ::Any)

function Base.show(io::IO, l::DenseFA)
    print(io, "DenseFA(", size(l.weight, 2), " => ", size(l.weight, 1))
    l.σ === identity || print(io, ", ", l.σ)
    keywords = String[]
    l.bias === false && push!(keywords, "bias=false")
    l.mode === :fa || push!(keywords, "mode=:" * string(l.mode))
    isempty(keywords) || print(io, "; ", join(keywords, ", "))
    print(io, ")")
end

include("conv.jl")
include("dfa.jl")  # after conv.jl: DFAChain takes ConvFA layers too

end # module PyFA
