// min_rnn with an invocation per 4 neighbouring units (H a multiple of 4): its
// lane values and stored elements as vec4 (see min_rnn.wgsl, "Width").

alias v32 = vec4<f32>;
alias pre_v = vec4<pre_t>;
alias y_v = vec4<y_t>;
