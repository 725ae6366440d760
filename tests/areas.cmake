# walship_test(<binary> <sources> LIBS <libs>): one line per test area.
walship_test(test_vfs test_vfs.cpp support/db.cpp LIBS walship::walship)
target_include_directories(test_vfs PRIVATE ${PROJECT_SOURCE_DIR}/vfs)
walship_test(test_location test_location.cpp LIBS walship::s3client)
