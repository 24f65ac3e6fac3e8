# Convolution trained by Feedback Alignment: ConvFA and the rule of its product, fa_conv.

"""
    fa_conv(x, weight, feedback, cdims::DenseConvDims, mode::Symbol) = conv(x, weight, cdims)

The forward pass is NNlib's `conv` (re-exported by Flux); `feedback` and `mode` only serve the
backward pass. With `δ = ȳ` and `B = feedback_matrix(mode, weight, feedback)` (built in the
pullback, once per backward pass), the `rrule` gives

    ∂x      = ∇conv_data(δ, B, cdims)        the transposed convolution of δ with B (BP: with W)
    ∂weight = ∇conv_filter(x, δ, cdims)      true
    ∂feedback = ∂weight in mode :kp (a copy), no tangent otherwise; none for cdims and mode.

This is NNlib's own rule for `conv` with `B` in the weight's place for the input gradient.
[`ConvFA`](@ref) calls it with `cdims` built with `flipkernel = true`: cross-correlation, as in
PyTorch and Flux's `CrossCor` (NNlib's default, `flipkernel = false`, flips the kernel: Flux's
`Conv` computes a true convolution). Both functions of the rule take `cdims` as they are, so
the backward pass always matches the forward convention.
"""
function fa_conv(x::AbstractArray, weight::AbstractArray, feedback::AbstractArray,
                 cdims::DenseConvDims, mode::Symbol)
    _check_mode(mode)
    _check_feedback(weight, feedback)
    return conv(x, weight, cdims)
end

function ChainRulesCore.rrule(::typeof(fa_conv), x::AbstractArray, weight::AbstractArray,
                              feedback::AbstractArray, cdims::DenseConvDims, mode::Symbol)
    _check_mode(mode)
    _check_feedback(weight, feedback)
    y = conv(x, weight, cdims)
    project_x = ProjectTo(x)
    project_weight = ProjectTo(weight)
    function fa_conv_pullback(ȳ)
        δ = _dense(unthunk(ȳ))
        B = _feedback_matrix(mode, weight, feedback)  # here, once per backward pass, never forward
        ∂x = @thunk project_x(∇conv_data(δ, B, cdims))  # FA: B in W's place (backprop: W)
        ∂weight, ∂feedback =
            _weight_and_feedback_tangents(mode, () -> project_weight(∇conv_filter(x, δ, cdims)))
        return (NoTangent(), ∂x, ∂weight, ∂feedback, NoTangent(), NoTangent())
    end
    return y, fa_conv_pullback
end

# NNlib's conv kernels want dense column-major arrays (a `Fill` cotangent, say, is not one).
_dense(a::DenseArray) = a
_dense(a::AbstractArray) = collect(a)

function _check_feedback(weight::AbstractArray, feedback::AbstractArray)
    size(feedback) == size(weight) && return nothing
    throw(DimensionMismatch(string("fa_conv: feedback must have the weight's shape ", size(weight),
                                   ", got ", size(feedback))))
end

"""
    ConvFA(filter, in => out, σ=identity; stride=1, pad=0, dilation=1, groups=1, bias=true,
           init=Flux.glorot_uniform, mode=:fa, rng=Random.default_rng())
    ConvFA(weight, feedback, [bias, σ]; stride=1, pad=0, dilation=1, groups=1, mode=:fa)
    ConvFA(c::Flux.Conv; mode=:fa, init=Flux.glorot_uniform, rng=Random.default_rng())

A convolutional layer trained by Feedback Alignment, in the style of Flux's `Conv`: `filter` is
the kernel size, e.g. `(3, 3)`; data are `(spatial..., channels, batch)`, WHCN for images:

    y = σ.(crosscorrelation(x, weight) .+ bias)

**Cross-correlation, not convolution**: `ConvFA` computes what PyTorch's `Conv2d`, Flux's
`CrossCor` and pyfa's numpy oracle compute (NNlib with `flipkernel = true`). Flux's `Conv`
flips the kernel: a `Conv` with kernel `w` is the `ConvFA` with kernel
`reverse(w; dims = 1:N)` (the `ConvFA(c::Flux.Conv)` constructor does that flip, so it computes
the same function as `c`). A PyTorch/numpy weight `W[o, c, kh, kw]` is
`permutedims(W, (4, 3, 2, 1))` here, `(kw, kh, c, o)`: the order of every axis reversed, as a
C-order array read column-major; data `x[n, c, h, w]` likewise become `(w, h, c, n)`.

In the backward pass `weight` and `bias` get their true gradients, and the error reaching `x` is
the transposed convolution of the upstream error with `B = feedback_matrix(mode, weight,
feedback)` instead of `weight` (see [`fa_conv`](@ref), [`feedback_matrix`](@ref)); the modes are
[`DenseFA`](@ref)'s: `:fa` (default), `:bp`, `:usf`, `:frsf`, `:brsf`, `:kp`.

Fields, in order: `weight` and `feedback` (both `(filter..., in ÷ groups, out)`), `bias` (a vector
of length `out`, or `false`), `σ`, `stride` and `dilation` (`N` integers, `N` = the number of
spatial dimensions), `pad` (`2N` integers, low and high for each spatial dimension in turn),
`groups` and `mode::Symbol`. `pad` may be given as one integer, `N` integers (the same at both
ends), `2N` integers, or Flux's `SamePad()`. `feedback` is an ordinary field (`gpu`, `f64`,
`fmap` move it) and not trainable (`Flux.trainable` gives `weight` and `bias`), except in mode
`:kp`, where it is trainable and receives `∂weight`. `init(rng, filter..., in ÷ groups, out)`
draws `weight` and, independently, `feedback` (Glorot uniform by default: PyTorch's fans).

The rule applies under Zygote, Enzyme and Mooncake, as for `DenseFA` (Mooncake: plain `Array`s
of Float32 or Float64). GPU: nothing in the layer is CUDA-specific; with CUDA.jl and cuDNN.jl
loaded, `gpu(layer)` moves weight and feedback, and NNlib's `conv`, `∇conv_data` and
`∇conv_filter` run through cuDNN (which takes `flipkernel` as its cross-correlation mode).

# Examples
```julia
using PyFA, Flux
layer = ConvFA((3, 3), 1 => 4, relu; pad = 1)           # cross-correlation, mode :fa
size(layer(rand32(12, 12, 1, 8)))                         # (12, 12, 4, 8)

model = Chain(ConvFA((3, 3), 1 => 4, relu; pad = 1), MeanPool((2, 2)), Flux.flatten,
              DenseFA(144 => 10))
x, y = rand32(12, 12, 1, 8), Flux.onehotbatch(rand(0:9, 8), 0:9)
grads = Flux.gradient(m -> Flux.logitcrossentropy(m(x), y), model)[1]
grads.layers[1].feedback === nothing                      # fixed
```
"""
struct ConvFA{N, M, F, A<:AbstractArray, R<:AbstractArray, V}
    weight::A
    feedback::R
    bias::V
    σ::F
    stride::NTuple{N, Int}
    pad::NTuple{M, Int}
    dilation::NTuple{N, Int}
    groups::Int
    mode::Symbol
    function ConvFA(weight::AbstractArray, feedback::AbstractArray, bias, σ::F,
                    stride::NTuple{N, Integer}, pad::NTuple{M, Integer},
                    dilation::NTuple{N, Integer}, groups::Integer, mode::Symbol) where {F, N, M}
        K = ndims(weight)
        K == N + 2 || throw(ArgumentError(string(
            "ConvFA: a weight of ", K, " dimensions (filter..., in ÷ groups, out) needs ", K - 2,
            " strides and dilations, got ", N)))
        M == 2N || throw(ArgumentError(string(
            "ConvFA: pad must hold ", 2N, " integers (low, high per spatial dimension), got ", pad)))
        size(feedback) == size(weight) || throw(DimensionMismatch(string(
            "ConvFA: feedback must have the weight's shape ", size(weight), ", got ", size(feedback))))
        mode in FA_MODES || throw(ArgumentError("ConvFA: unknown mode :$mode; expected one of $FA_MODES"))
        groups >= 1 && size(weight, K) % groups == 0 || throw(ArgumentError(string(
            "ConvFA: groups = ", groups, " must be ≥ 1 and divide the ", size(weight, K),
            " output channels")))
        all(>=(1), stride) && all(>=(1), dilation) && all(>=(0), pad) || throw(ArgumentError(string(
            "ConvFA: stride and dilation must be ≥ 1 and pad ≥ 0; got stride = ", stride,
            ", dilation = ", dilation, ", pad = ", pad)))
        b = Flux.create_bias(weight, bias, size(weight, K))
        fb = feedback === weight ? copy(feedback) : feedback
        return new{N, M, F, typeof(weight), typeof(fb), typeof(b)}(
            weight, fb, b, σ, map(Int, stride), map(Int, pad), map(Int, dilation), Int(groups), mode)
    end
end

function ConvFA(weight::AbstractArray, feedback::AbstractArray, bias = true, σ = identity;
                stride = 1, pad = 0, dilation = 1, groups::Integer = 1, mode = :fa)
    N = ndims(weight) - 2
    N >= 1 || throw(ArgumentError(string(
        "ConvFA: the weight must be (filter..., in ÷ groups, out), at least 3 dimensions; got ",
        summary(weight))))
    stride = _spatial(N, stride, "stride")
    dilation = _spatial(N, dilation, "dilation")
    pad = _padding(pad, N, size(weight)[1:N], dilation)
    return ConvFA(weight, feedback, bias, σ, stride, pad, dilation, groups, Symbol(mode))
end

function ConvFA(filter::NTuple{N, Integer}, (in, out)::Pair{<:Integer, <:Integer}, σ = identity;
                stride = 1, pad = 0, dilation = 1, groups::Integer = 1, bias = true,
                init = Flux.glorot_uniform, mode = :fa, rng::AbstractRNG = Random.default_rng()) where {N}
    groups >= 1 && in % groups == 0 && out % groups == 0 || throw(ArgumentError(string(
        "ConvFA: in = ", in, " and out = ", out, " channels must both be divisible by groups = ",
        groups)))
    shape = (filter..., in ÷ groups, out)
    return ConvFA(init(rng, shape...), init(rng, shape...), bias, σ;
                  stride, pad, dilation, groups, mode)
end

function ConvFA(c::Flux.Conv; mode = :fa, init = Flux.glorot_uniform,
                rng::AbstractRNG = Random.default_rng())
    N = ndims(c.weight) - 2
    weight = reverse(c.weight; dims = Tuple(1:N))  # Conv flips its kernel; ConvFA does not
    feedback = convert(AbstractArray{eltype(weight)}, init(rng, size(weight)...))
    return ConvFA(weight, feedback, c.bias, c.σ; stride = c.stride, pad = c.pad,
                  dilation = c.dilation, groups = c.groups, mode)
end

_spatial(N::Int, v::Integer, what) = ntuple(_ -> Int(v), N)
function _spatial(N::Int, v::Tuple, what)
    length(v) == N && return map(Int, v)
    throw(ArgumentError("ConvFA: $what must be an integer or $N integers, got $v"))
end

_padding(pad::Integer, N::Int, filter, dilation) = ntuple(_ -> Int(pad), 2N)
function _padding(pad::Tuple, N::Int, filter, dilation)
    length(pad) == 2N && return map(Int, pad)
    length(pad) == N && return ntuple(i -> Int(pad[(i + 1) ÷ 2]), 2N)
    throw(ArgumentError("ConvFA: pad must be an integer, $N or $(2N) integers, or SamePad(); got $pad"))
end
function _padding(::SamePad, N::Int, filter, dilation)  # as Flux: the odd one extra at the start
    return ntuple(2N) do i
        total = (filter[(i + 1) ÷ 2] - 1) * dilation[(i + 1) ÷ 2]
        isodd(i) ? cld(total, 2) : fld(total, 2)
    end
end

Flux.@layer ConvFA

function Flux.trainable(c::ConvFA)
    c.mode === :kp && return (; weight = c.weight, bias = c.bias, feedback = c.feedback)
    return (; weight = c.weight, bias = c.bias)
end

function (c::ConvFA)(x::AbstractArray)
    _check_input(c, x)
    cdims = _conv_dims(c, x)
    xT = Flux._match_eltype(c, x)  # as Flux's Conv does
    return c.σ.(fa_conv(xT, c.weight, c.feedback, cdims, c.mode) .+ _conv_bias(c))
end

"""NNlib's dimensions for `c` on `x`, cross-correlation (`flipkernel = true`)."""
_conv_dims(c::ConvFA, x::AbstractArray) =
    DenseConvDims(x, c.weight; stride = c.stride, padding = c.pad, dilation = c.dilation,
                  groups = c.groups, flipkernel = true)
ChainRulesCore.@non_differentiable _conv_dims(::Any, ::Any)

_conv_bias(c::ConvFA{N}) where {N} = _channel_bias(c.bias, Val(N))
_channel_bias(b::AbstractVector, ::Val{N}) where {N} = reshape(b, ntuple(_ -> 1, Val(N))..., :, 1)
_channel_bias(b, ::Val) = b  # false: no bias

function _check_input(c::ConvFA, x::AbstractArray)
    K = ndims(c.weight)
    channels = size(c.weight, K - 1) * c.groups
    ndims(x) == K && size(x, K - 1) == channels || throw(DimensionMismatch(string(
        c, " expects an input of ", K, " dimensions (spatial..., channels = ", channels,
        ", batch), got ", summary(x))))
    for d in 1:(K - 2)
        span = (size(c.weight, d) - 1) * c.dilation[d] + 1
        size(x, d) + c.pad[2d - 1] + c.pad[2d] >= span || throw(DimensionMismatch(string(
            c, ": the (dilated) kernel spans ", span, " along dimension ", d, " but the input ",
            summary(x), " has ", size(x, d), " there, padded by ", c.pad[2d - 1], " and ", c.pad[2d])))
    end
    return nothing
end

function Base.show(io::IO, c::ConvFA)
    N = ndims(c.weight) - 2
    print(io, "ConvFA(", size(c.weight)[1:N], ", ", size(c.weight, N + 1) * c.groups, " => ",
          size(c.weight, N + 2))
    c.σ === identity || print(io, ", ", c.σ)
    all(==(0), c.pad) || print(io, ", pad=", _compact(c.pad))
    all(==(1), c.stride) || print(io, ", stride=", _compact(c.stride))
    all(==(1), c.dilation) || print(io, ", dilation=", _compact(c.dilation))
    c.groups == 1 || print(io, ", groups=", c.groups)
    c.bias === false && print(io, ", bias=false")
    c.mode === :fa || print(io, ", mode=:", c.mode)
    print(io, ")")
end

_compact(t::Tuple) = allequal(t) ? string(first(t)) : string(t)
