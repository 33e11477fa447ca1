# Runs PROGRAM and passes only if it exited with 42 and printed the handler's marker followed by
# the failed check's message (the exit code alone could come from elsewhere).
execute_process(COMMAND ${PROGRAM} RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("exit code: ${code}\nstdout:\n${out}\nstderr:\n${err}")
if(NOT code EQUAL 42)
  message(FATAL_ERROR "expected exit code 42 from the installed error handler, got '${code}'")
endif()
if(NOT out MATCHES "lowbit-noexcept: handler called: quantize_rtn: rows=0")
  message(FATAL_ERROR "the handler's marker or the check's message is missing from stdout")
endif()
