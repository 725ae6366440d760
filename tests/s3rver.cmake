# The second opinion (label "s3rver"): the S3 client's integration tests and walship round trips run
# again against s3rver (npm), the second S3-compatible server. The fixture installs s3rver into
# BUILD_DIR/s3rver-node when missing (a failed install fails the fixture, and so these tests) and
# starts it on a free port; the tests find it through WALSHIP_TEST_ENDPOINT_FILE.
# Included from tests/CMakeLists.txt after areas.cmake.
set(S3RVER_ENDPOINT_FILE ${WALSHIP_TEST_DIR}/s3rver.endpoint)
add_test(NAME s3rver_start COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/support/s3rver.sh start ${WALSHIP_TEST_DIR} ${PROJECT_BINARY_DIR}/s3rver-node)
add_test(NAME s3rver_stop COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/support/s3rver.sh stop ${WALSHIP_TEST_DIR})
set_tests_properties(s3rver_start PROPERTIES FIXTURES_SETUP s3rver LABELS s3rver TIMEOUT 300)
set_tests_properties(s3rver_stop PROPERTIES FIXTURES_CLEANUP s3rver LABELS s3rver)

# s3rver_tests(<test binary> <Catch test spec>): those test cases again, named "s3rver/<case>".
function(s3rver_tests target spec)
  catch_discover_tests(${target} TEST_SPEC ${spec} TEST_PREFIX "s3rver/" EXTRA_ARGS --warn NoTests
    PROPERTIES FIXTURES_REQUIRED s3rver ENVIRONMENT WALSHIP_TEST_ENDPOINT_FILE=${S3RVER_ENDPOINT_FILE}
    TIMEOUT 600 LABELS s3rver)
endfunction()

# Every S3 client integration test except [auth], which starts a moto of its own, and [dots]:
# s3rver resolves '.' and '..' in the path itself, where S3 and moto keep them as part of the key.
s3rver_tests(test_s3_client "[integration]~[auth]~[dots]")
# The VFS integration tests (databases written through walship, restored and compared page by
# page, point-in-time restore, snapshots in parts, damaged replicas...), except those whose store
# is unreachable on purpose, and "restarts continue the same generation", which against s3rver
# now and then starts a second generation (a restart's checkpoint ran before the shipper resumed;
# nothing is lost; see docs/S3CLIENT.md): left out until that VFS race is fixed.
s3rver_tests(test_vfs [[[integration]~"*unreachable*"~"restarts continue the same generation*"]])
# The C++ front end's round trip: walship restore, byte comparison, auto-restore.
add_test(NAME s3rver_frontend_cpp COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/frontends/roundtrip.sh
  cpp ${PROJECT_BINARY_DIR} ${S3RVER_ENDPOINT_FILE})
set_tests_properties(s3rver_frontend_cpp PROPERTIES FIXTURES_REQUIRED s3rver TIMEOUT 600 LABELS s3rver)
